"""Your own tasks, shipped in the payload.

The launcher imports every package directly under this directory (``training.tasks.<name>``)
right before it looks the task up, after the Isaac Sim app is up in an Isaac Lab image. A
package registers its task ids with gymnasium when it is imported, exactly as Isaac Lab's own
task packages do (``gymnasium.register(id=..., entry_point=..., kwargs=...)``); the client
reads those calls statically to check ``-t`` at ``--dry-run``. Packages elsewhere (an Isaac
Lab extension package shipped in the payload) are named with ``--task-module``. README:
"Your own task"; the example is ``gantry_reach``.
"""
