"""An Isaac Lab extension package as Isaac Lab's extension template lays one out, shipped in
the payload at src/training/my_robot/ and named with ``--task-module my_robot``: a task
subpackage whose ``__init__`` registers ``MyRobot-Reach-v0`` with entry points into the
package itself (env cfg class, rsl-rl cfg class, skrl YAML next to ``agents``), and cfg
modules that import the package by its own name, as the template's do.

File path (relative to src/training) -> text (dedented when written).
"""

from __future__ import annotations

ISAACLAB_EXTENSION = {
    "my_robot/__init__.py": "from . import tasks  # noqa: F401\n",
    "my_robot/tasks/__init__.py": "from . import reach  # noqa: F401\n",
    "my_robot/tasks/reach/__init__.py": '''\
        import gymnasium as gym

        from . import agents

        gym.register(
            id="MyRobot-Reach-v0",
            entry_point="isaaclab.envs:ManagerBasedRLEnv",
            disable_env_checker=True,
            kwargs={
                "env_cfg_entry_point": f"{__name__}.reach_env_cfg:ReachEnvCfg",
                "rsl_rl_cfg_entry_point": f"{agents.__name__}.rsl_rl_ppo_cfg:PPORunnerCfg",
                "skrl_cfg_entry_point": f"{agents.__name__}:skrl_ppo_cfg.yaml",
            },
        )
        ''',
    "my_robot/tasks/reach/reach_env_cfg.py": '''\
        from isaaclab.utils import configclass

        import my_robot.tasks.reach.mdp as mdp  # absolute, as the template's cfgs import


        @configclass
        class ReachEnvCfg:
            decimation: int = 2
            episode_length_s: float = mdp.EPISODE_LENGTH_S
        ''',
    "my_robot/tasks/reach/mdp.py": "EPISODE_LENGTH_S = 4.0\n",
    "my_robot/tasks/reach/agents/__init__.py": "",
    "my_robot/tasks/reach/agents/rsl_rl_ppo_cfg.py": '''\
        from isaaclab.utils import configclass
        from isaaclab_rl.rsl_rl import (RslRlOnPolicyRunnerCfg, RslRlPpoActorCriticCfg,
                                        RslRlPpoAlgorithmCfg)


        @configclass
        class PPORunnerCfg(RslRlOnPolicyRunnerCfg):
            num_steps_per_env = 24
            max_iterations = 300
            save_interval = 50
            experiment_name = "my_robot_reach"
            policy = RslRlPpoActorCriticCfg(init_noise_std=1.0, actor_hidden_dims=[64, 64],
                                            critic_hidden_dims=[64, 64], activation="elu")
            algorithm = RslRlPpoAlgorithmCfg(
                value_loss_coef=1.0, use_clipped_value_loss=True, clip_param=0.2,
                entropy_coef=0.01, num_learning_epochs=5, num_mini_batches=4,
                learning_rate=1.0e-3, schedule="adaptive", gamma=0.99, lam=0.95,
                desired_kl=0.01, max_grad_norm=1.0)
        ''',
    "my_robot/tasks/reach/agents/skrl_ppo_cfg.yaml": '''\
        seed: 42
        agent:
          class: PPO
          rollouts: 24
        trainer:
          timesteps: 7200
        ''',
}

