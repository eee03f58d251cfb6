"""GantryReach-v0: a two-axis gantry robot of our own (gantry_reach.xml) moves its tool to a
random target on the table. Small enough to learn in a few dozen CPU iterations; its agent cfg
is ``src/training/agents/GantryReach-v0.yaml``.

Only gymnasium is imported here: the env module (and MuJoCo) load when the task is made.
"""

import gymnasium

gymnasium.register(
    id="GantryReach-v0",
    entry_point=f"{__name__}.env:GantryReachEnv",
    max_episode_steps=50,
)
