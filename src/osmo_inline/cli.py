"""Step 1 and the flow: flags + environment -> SubmitConfig -> payload -> spec -> osmo or local.

`main(argv)` is the `submit-training` console script and `python -m osmo_inline`. Arguments
before `--` are the client's flags (an unknown one is an error, never forwarded); after `--`,
`key=value` tokens are template values, `--dry-run` may stand anywhere, and every other token
is forwarded to `osmo workflow submit`.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

from osmo_inline import artifacts, groups, storage, sweep
from osmo_inline import overrides as cfg_overrides
from osmo_inline.config import CLIENT_FILLED, DEFAULT_PAYLOAD_BUDGET, SubmitConfig
from osmo_inline.errors import BadInput, ClientError, SpecInvalid
from osmo_inline.payload import ARCHIVE_PREFIX, Payload, build_payload, summary
from osmo_inline.payload_tasks import check_task, describe, read_catalog, relative_names
from osmo_inline.redact import redact, why_secret
from osmo_inline.render import Template, load_template, load_yaml, render
from osmo_inline.requirements import check_requirements
from osmo_inline.task_names import task_for_image
from osmo_inline.validate import validate_spec

if TYPE_CHECKING:
    from osmo_inline.osmo import Submission

PROG = "submit-training"
DEFAULT_TEMPLATE = "templates/isaaclab-inline.yaml"
DEFAULT_SOURCE = "src/training"
BOOTSTRAP = Path(__file__).with_name("bootstrap.py")

# (template variable = argparse dest, environment override, default): a flag beats its
# variable, which beats the default. The seed's variables plus TRAINING_BACKEND.
OVERRIDABLE = (
    ("task", "TASK", "Isaac-Velocity-Rough-Anymal-C-v0"),
    ("num_envs", "NUM_ENVS", "2048"),
    ("max_iterations", "MAX_ITERATIONS", ""),
    ("image", "IMAGE", "nvcr.io/nvidia/isaac-lab:2.2.0"),
    ("payload_root", "PAYLOAD_ROOT", "/workspace/isaac_payload"),
    ("run_azure_smoke_test", "RUN_AZURE_SMOKE_TEST", "0"),
    ("checkpoint_uri", "CHECKPOINT_URI", ""),
    ("checkpoint_mode", "CHECKPOINT_MODE", "from-scratch"),
    ("register_checkpoint", "REGISTER_CHECKPOINT", ""),
    ("sleep_after_unpack", "SLEEP_AFTER_UNPACK", ""),
    ("backend", "TRAINING_BACKEND", "rsl_rl"),
    ("auto_resume", "AUTO_RESUME", "true"),
    ("enable_cameras", "ENABLE_CAMERAS", "0"),
    ("video", "VIDEO", "0"),
    ("video_length", "VIDEO_LENGTH", "200"),
    ("video_interval", "VIDEO_INTERVAL", "100"),
    ("task_modules", "TASK_MODULES", ""),  # --task-module may repeat (payload_tasks.py)
    ("run_mode", "RUN_MODE", "train"),  # --evaluate / --export (training.evaluate)
    ("eval_episodes", "EVAL_EPISODES", "10"),
)
# Resource flags: no environment override in the seed.
RESOURCES = (("gpu", "1"), ("nodes", "1"), ("cpu", "8"), ("memory", "48Gi"), ("storage", "80Gi"))
CHECKPOINT_MODES = ("from-scratch", "warm-start", "resume")
RUN_MODES = ("train", "evaluate", "export")
# Template values the bootstrap reads as PAYLOAD_MAX_EXTRACTED_BYTES / PAYLOAD_MAX_MEMBERS.
EXTRACTION_LIMITS = ("payload_max_extracted_bytes", "payload_max_members")
BACKENDS = ("rsl_rl", "skrl")
# The backend of a --local training run of one process when neither -b nor TRAINING_BACKEND
# says: skrl reaches a mean return of +500 on HalfCheetah-v5 sooner on a CPU (bench/RESULTS.md,
# "Time to learn"). Several ranks stay rsl_rl: skrl's own multi-process path needs CUDA GPUs.
LOCAL_DEFAULT_BACKEND = "skrl"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")
_KEY_VALUE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.DOTALL)
_QUANTITY = re.compile(r"\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|K|M|G|T|P)?")
_SECONDS = re.compile(r"\d+(\.\d+)?")
_INTEGER = re.compile(r"\d+")
_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")

EPILOG = """\
after --:
  key=value        a template value (e.g. azure_client_id=...); unknown keys are refused
  agent.PATH=V     override the agent cfg (agent.algorithm.learning_rate=3e-4)
  env.PATH=V       override the env cfg (env.scene.num_envs=4096; gymnasium: env.<kwarg>)
  --dry-run        print the rendered spec and a payload summary, submit nothing (anywhere)
  anything else    forwarded to `osmo workflow submit` (e.g. --pool NAME --priority LOW)

environment overrides (a flag beats its variable):
  TASK NUM_ENVS MAX_ITERATIONS IMAGE PAYLOAD_ROOT RUN_AZURE_SMOKE_TEST CHECKPOINT_URI
  CHECKPOINT_MODE REGISTER_CHECKPOINT SLEEP_AFTER_UNPACK TRAINING_BACKEND AUTO_RESUME
  ENABLE_CAMERAS VIDEO VIDEO_LENGTH VIDEO_INTERVAL TASK_MODULES (comma- or space-separated)
  RUN_MODE EVAL_EPISODES
  OSMO_INLINE_STORAGE_URL (or storage_url= after --)

exit codes: 0 ok, 2 bad input, 3 spec invalid, 4 osmo missing, 5/6/7/8 osmo exit 1/2/10/75,
9 other osmo failure; with --local, the task's own exit code (a group's: its lead's, or the
failure that ended it; a sweep: its first failed task's, 75 when stopped, else the report's).
"""


class _Parser(argparse.ArgumentParser):
    """argparse that raises BadInput (one line, exit 2) and remembers each flag's names."""

    def __init__(self, **kwargs: Any) -> None:
        self.flag_names: dict[str, str] = {}  # dest -> "-n/--num-envs", for messages
        super().__init__(**kwargs)

    def add_argument(self, *names: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*names, **kwargs)
        self.flag_names[action.dest] = "/".join(action.option_strings)
        return action

    def error(self, message: str) -> NoReturn:
        raise BadInput(message + " (template values and osmo options go after --)"
                       if "unrecognized arguments" in message else message)


def build_parser() -> _Parser:
    parser = _Parser(
        prog=PROG, allow_abbrev=False, epilog=EPILOG,
        usage=f"{PROG} [flags] [-- key=value ... [--dry-run] [osmo options]]",
        description="Package src/training, render the OSMO workflow and submit it "
                    "(or print it with --dry-run, or run it here with --local).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Defaults are None so that an absent flag falls back to its environment variable.
    add = parser.add_argument
    add("-t", "--task", help="Isaac Lab task or gymnasium id (default: "
        "Isaac-Velocity-Rough-Anymal-C-v0; on a 3.x image its 3.0 name)")
    add("-n", "--num-envs", metavar="COUNT", help="parallel environments (default: 2048)")
    add("-m", "--max-iterations", metavar="N", help="learning iterations (default: the task's)")
    add("-i", "--image", help="container image (default: nvcr.io/nvidia/isaac-lab:2.2.0)")
    add("-c", "--checkpoint-uri", metavar="URI",
        help="runs:/, models:/, mlflow-artifacts:/ URI or path to start from")
    add("-M", "--checkpoint-mode", metavar="MODE",
        help="from-scratch (default), warm-start, resume; fresh = from-scratch")
    add("--no-auto-resume", dest="auto_resume", action="store_const", const="false",
        help="on a retry, start over as requested instead of continuing this workflow's "
        "MLflow run from its last checkpoint")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--evaluate", dest="run_mode", action="store_const", const="evaluate",
                       help="run the -c checkpoint's policy for --episodes episodes "
                       "(deterministic) instead of training; results in a new MLflow run")
    modes.add_argument("--export", dest="run_mode", action="store_const", const="export",
                       help="export the -c checkpoint's policy (TorchScript, ONNX, MLflow "
                       "model) to a new MLflow run's policy/ instead of training")
    parser.flag_names["run_mode"] = "--evaluate/--export"
    add("--episodes", dest="eval_episodes", metavar="N",
        help="episodes --evaluate runs (default: 10)")
    add("-r", "--register-checkpoint", metavar="NAME",
        help="model name to register the final checkpoint under")
    add("-s", "--run-smoke-test", dest="run_azure_smoke_test", action="store_const", const="1",
        help="run connectivity checks before training")
    add("-w", "--workflow", metavar="PATH",
        help=f"workflow template (default: {DEFAULT_TEMPLATE} in the project)")
    add("-p", "--payload-root", metavar="DIR",
        help="extraction root in the container (default: /workspace/isaac_payload)")
    add("--sleep-after-unpack", metavar="SECONDS",
        help="after extraction, sleep this long and exit without training (inspection)")
    add("-b", "--backend", metavar="NAME", help="rsl_rl (default; with --local: skrl, "
        "unless several ranks) or skrl")
    add("--enable-cameras", dest="enable_cameras", action="store_const", const="1",
        help="start Isaac Sim with camera rendering (tasks with camera sensors)")
    add("--video", dest="video", action="store_const", const="1",
        help="record videos of the policy during training (with --evaluate: of its "
        "first episode), logged under the run's videos/ (Isaac Lab tasks: turns cameras on)")
    add("--video-length", metavar="FRAMES", help="env steps per video (default: 200)")
    add("--video-interval", metavar="ITERATIONS",
        help="learning iterations between videos (default: 100)")
    add("--task-module", dest="task_modules", action="append", metavar="MODULE",
        help="a module that registers tasks, imported in the container after every package "
        "under src/training/tasks/ (repeatable; e.g. an Isaac Lab extension package)")
    add("--gpu", help="GPUs of each node, and so its training processes (ranks) (default: 1)")
    add("--nodes", metavar="N",
        help="nodes (OSMO tasks started together as one group; node 0 leads the rendezvous "
        "on port 29500) (default: 1: one task)")
    add("--cpu", help="CPUs (default: 8)")
    add("--memory", help="memory (default: 48Gi)")
    add("--storage", help="ephemeral storage (default: 80Gi)")
    add("--source", metavar="DIR",
        help=f"directory packaged as src/training (default: {DEFAULT_SOURCE} in the project)")
    add("--payload-budget", metavar="BYTES", default=str(DEFAULT_PAYLOAD_BUDGET),
        help=f"largest base64 payload delivered inline (default: {DEFAULT_PAYLOAD_BUDGET})")
    add("--delivery", choices=storage.DELIVERIES, default="auto",
        help="inline (in the spec), storage (an object the task downloads) or auto: inline "
        "within --payload-budget, storage beyond (default: auto)")
    add("--storage-url", metavar="URL",
        help="s3://, gs:// or azure:// prefix for storage delivery; with --local a directory "
        f"or file:// (environment: {storage.ENV_VAR})")
    add("--sweep", action="append", default=[], metavar="KEY=V1,V2,...",
        help="one task per combination of these values (repeatable: the grid is the "
        "product); KEY: seed or another template value, or agent.<path> / env.<path>")
    add("--yes", action="store_true",
        help=f"allow a sweep (or --nodes) of more than {sweep.MAX_TASKS} tasks")
    add("-j", "--jobs", metavar="N",
        help="with --local --sweep: run N tasks of the sweep at a time (default: 1)")
    add("--sweep-report", metavar="SWEEP_ID",
        help="print the table of a recorded sweep and write its learning-curve PNG")
    add("--dry-run", action="store_true", help="print the rendered spec, submit nothing")
    add("--local", action="store_true", help="run the rendered workflow on this machine")
    add("--workflow-id", metavar="ID", help="with --local: the run's workflow id (a retry)")
    add("-q", "--quiet", action="store_true", help="no progress or payload summary")
    add("--output", choices=("text", "json"), default="text",
        help="result format on stdout (default: text)")
    return parser


class AfterDashes(NamedTuple):
    values: dict[str, str]  # template values
    forwarded: tuple[str, ...]  # options for `osmo workflow submit`
    dry_run: bool
    overrides: dict[str, str]  # agent.<path> / env.<path> -> the value's text


def split_after_dashes(tokens: Sequence[str]) -> AfterDashes:
    """Template values, forwarded osmo options, whether --dry-run was among them, and the
    cfg overrides (`agent.<path>=<value>`, `env.<path>=<value>`)."""
    values: dict[str, str] = {}
    overrides: dict[str, str] = {}
    forwarded: list[str] = []
    dry_run = False
    for token in tokens:
        match = _KEY_VALUE.fullmatch(token)
        key = token.split("=", 1)[0]
        if match:
            values[match.group(1)] = match.group(2)
        elif "=" in token and cfg_overrides.is_override_token_key(key):
            cfg_overrides.check_key(key, redact(token))
            overrides[key] = token.split("=", 1)[1]
        elif token == "--dry-run":
            dry_run = True
        elif token in ("--set", "--set-string"):
            raise BadInput(f"{token} is not needed: write template values as key=value after "
                           "-- (the client renders the template itself)")
        elif "=" in token and not token.startswith("-"):
            # Meant as a template value (osmo options start with "-", and osmo takes no
            # positional key=value): forwarding it would submit a workflow without it.
            raise BadInput(f"bad template value {redact(token)!r} after --: the key "
                           f"{key!r} is not a name (letters, digits and _, not starting "
                           "with a digit)" if key else
                           f"bad template value {redact(token)!r} after --: the key is empty")
        else:
            forwarded.append(token)
    return AfterDashes(values, tuple(forwarded), dry_run, overrides)


def _resolve(
    parser: _Parser, flags: argparse.Namespace, environ: Mapping[str, str]
) -> dict[str, tuple[str, str]]:
    """Template variable -> (value, where it came from: "-n/--num-envs", "NUM_ENVS
    (environment)" or "default") for every flag that sets one."""
    resolved = {}
    for dest, variable, default in (*((d, None, v) for d, v in RESOURCES), *OVERRIDABLE):
        flag_value = getattr(flags, dest)
        if flag_value is not None:
            resolved[dest] = (flag_value, parser.flag_names[dest])
        elif variable and environ.get(variable, ""):  # empty = unset, as ${VAR:-default} did
            resolved[dest] = (environ[variable], f"{variable} (environment)")
        else:
            resolved[dest] = (default, "default")
    return resolved


def find_project_dir(cwd: Path) -> Path:
    """The nearest directory from cwd upwards that holds src/training or the default template,
    so the client works from anywhere inside a project (the seed's script found its files
    next to itself); cwd when there is none. `.tmp/` and the defaults are relative to it,
    paths given on the command line relative to cwd."""
    for directory in (cwd, *cwd.parents):
        if (directory / DEFAULT_SOURCE).is_dir() or (directory / DEFAULT_TEMPLATE).is_file():
            return directory
    return cwd


def _positive_int(value: str, where: str, *, allow_zero: bool = False) -> int:
    if not _INTEGER.fullmatch(value.strip()) or (int(value) == 0 and not allow_zero):
        kind = "a non-negative" if allow_zero else "a positive"
        raise BadInput(f"{where} must be {kind} integer, not {value!r}")
    return int(value)


def _module_names(given: str | list[str], where: str) -> tuple[str, ...]:
    """--task-module values (a list) or TASK_MODULES (commas or spaces between names)."""
    texts = given if isinstance(given, list) else [given]
    names = [name for text in texts for name in re.split(r"[,\s]+", text) if name]
    for name in names:
        if not _MODULE_NAME.fullmatch(name):
            raise BadInput(f"{where}: {name!r} is not a dotted Python module name "
                           "(e.g. my_robot.tasks)")
    return tuple(names)


def parse_config(argv: Sequence[str], environ: Mapping[str, str], cwd: Path) -> SubmitConfig:
    """Flags and environment -> a checked SubmitConfig; BadInput on the first problem."""
    argv = list(argv)
    before, after = (argv[: argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv \
        else (argv, [])
    parser = build_parser()
    flags = parser.parse_args(before)
    template_values, osmo_args, dry_run_after, overrides = split_after_dashes(after)
    storage_url = storage.resolve_storage_url(flags.storage_url, template_values, environ, cwd)
    storage.check_delivery_settings(flags.delivery, storage_url)
    resolved = _resolve(parser, flags, environ)
    value = {dest: text for dest, (text, _) in resolved.items()}
    where = {dest: source for dest, (_, source) in resolved.items()}

    run_mode = value["run_mode"].strip().lower() or "train"
    if run_mode not in RUN_MODES:
        raise BadInput(f"{where['run_mode']}: unknown run mode {run_mode!r}; use one of "
                       + ", ".join(RUN_MODES))
    if run_mode != "train" and not value["checkpoint_uri"].strip():
        raise BadInput(f"--{run_mode} needs a checkpoint: pass -c/--checkpoint-uri")
    checkpoints_task = run_mode != "train" and where["task"] == "default"
    if checkpoints_task:
        value["task"] = ""  # the container takes the task the checkpoint records
    for dest in ("task", "image", "payload_root", "backend"):
        if dest == "task" and checkpoints_task:
            continue
        if not value[dest].strip() or any(c.isspace() for c in value[dest]):
            raise BadInput(f"{where[dest]} must be a non-empty word, not {value[dest]!r}")
    mode = value["checkpoint_mode"].strip().lower()
    mode = "from-scratch" if mode == "fresh" else mode
    if mode not in CHECKPOINT_MODES:
        raise BadInput(f"{where['checkpoint_mode']}: unknown checkpoint mode {mode!r}; use one "
                       "of from-scratch, warm-start, resume, fresh")
    if mode != "from-scratch" and not value["checkpoint_uri"].strip():
        raise BadInput(f"checkpoint mode {mode} needs a checkpoint: pass -c/--checkpoint-uri")
    smoke = value["run_azure_smoke_test"].strip().lower()
    if smoke not in _TRUE + _FALSE:
        raise BadInput(f"{where['run_azure_smoke_test']} must be 1 or 0, not {smoke!r}")
    cameras = value["enable_cameras"].strip().lower()
    if cameras not in _TRUE + _FALSE:
        raise BadInput(f"{where['enable_cameras']} must be 1 or 0, not {cameras!r}")
    video = value["video"].strip().lower()
    if video not in _TRUE + _FALSE:
        raise BadInput(f"{where['video']} must be 1 or 0, not {video!r}")
    auto_resume = value["auto_resume"].strip().lower() or "true"
    if auto_resume not in _TRUE + _FALSE:
        raise BadInput(f"{where['auto_resume']} must be true or false, not {auto_resume!r}")
    sleep = value["sleep_after_unpack"].strip()
    if sleep and not _SECONDS.fullmatch(sleep):
        raise BadInput(f"{where['sleep_after_unpack']} must be a non-negative number of "
                       f"seconds, not {sleep!r}")
    if value["backend"] not in BACKENDS:
        raise BadInput(f"{where['backend']}: unknown backend {value['backend']!r}; use "
                       + " or ".join(BACKENDS))
    if not value["payload_root"].startswith("/"):
        raise BadInput(f"{where['payload_root']} must be an absolute path, not "
                       f"{value['payload_root']!r}")
    if ".." in value["payload_root"].split("/"):
        # /workspace/x/.. is /workspace, where Isaac Lab lives: say what the root would be.
        raise BadInput(f"{where['payload_root']} must not contain '..' components, not "
                       f"{value['payload_root']!r} (write the directory itself)")
    for name in ("memory", "storage"):
        if not _QUANTITY.fullmatch(value[name]):
            raise BadInput(f"{where[name]} must be a quantity such as 48Gi, not {value[name]!r}")
    if flags.workflow_id is not None and not flags.local:
        raise BadInput("--workflow-id only applies to --local runs")
    max_iterations = value["max_iterations"].strip()
    gpu = _positive_int(value["gpu"], where["gpu"], allow_zero=True)
    nodes = _positive_int(value["nodes"], where["nodes"])
    if nodes > 1 and gpu == 0:
        raise BadInput(f"{where['nodes']} {nodes} needs at least one GPU on each node: the "
                       "nodes train together over NCCL (give --gpu 1 or more)")
    if nodes > 1 and run_mode != "train":
        raise BadInput(f"--{run_mode} runs in one process on one node: drop {where['nodes']}")
    if where["backend"] == "default" and flags.local and run_mode == "train" \
            and gpu * nodes <= 1:
        value["backend"] = LOCAL_DEFAULT_BACKEND
    task_modules = _module_names(value["task_modules"], where["task_modules"])
    project_dir = find_project_dir(cwd)

    task = "" if checkpoints_task else task_for_image(value["task"], value["image"], where["task"])
    axes = sweep.parse_axes(flags.sweep, [dest for dest, _, _ in OVERRIDABLE]
                            + [dest for dest, _ in RESOURCES])
    sweep.check_not_given_twice(axes, template_values, overrides)

    return SubmitConfig(
        task=task,
        num_envs=_positive_int(value["num_envs"], where["num_envs"]),
        max_iterations=_positive_int(max_iterations, where["max_iterations"])
        if max_iterations else None,
        image=value["image"],
        checkpoint_uri=value["checkpoint_uri"].strip(),
        checkpoint_mode=mode,
        auto_resume=auto_resume in _TRUE,
        register_checkpoint=value["register_checkpoint"].strip(),
        run_smoke_test=smoke in _TRUE,
        workflow=cwd / flags.workflow if flags.workflow else project_dir / DEFAULT_TEMPLATE,
        payload_root=value["payload_root"],
        sleep_after_unpack=sleep,
        backend=value["backend"],
        gpu=gpu,
        nodes=nodes,
        cpu=_positive_int(value["cpu"], where["cpu"]),
        memory=value["memory"],
        storage=value["storage"],
        source=cwd / flags.source if flags.source else project_dir / DEFAULT_SOURCE,
        project_dir=project_dir,
        payload_budget=_positive_int(flags.payload_budget, "--payload-budget"),
        template_values=template_values,
        overrides=overrides,
        sweep=axes,
        yes=flags.yes,
        jobs=sweep.parse_jobs(flags.jobs, flags.sweep, flags.local),
        sweep_report=flags.sweep_report,
        osmo_args=osmo_args,
        dry_run=flags.dry_run or dry_run_after,
        local=flags.local,
        quiet=flags.quiet,
        workflow_id=flags.workflow_id,
        output=flags.output,
        delivery=flags.delivery,
        storage_url=storage_url,
        task_modules=task_modules,
        explicit={name: source for name, source in where.items() if source != "default"},
        enable_cameras=cameras in _TRUE,
        run_mode=run_mode,
        eval_episodes=_positive_int(value["eval_episodes"], where["eval_episodes"]),
        video=video in _TRUE,
        video_length=_positive_int(value["video_length"], where["video_length"]),
        video_interval=_positive_int(value["video_interval"], where["video_interval"]),
    )


def user_values(config: SubmitConfig, template: Template) -> dict[str, object]:
    """Flag values plus key=value ones, checked against the variables the template uses."""
    from_flags = config.flag_values()
    settable = sorted(template.variables - set(CLIENT_FILLED) - set(from_flags))
    for key in config.template_values:
        if key in CLIENT_FILLED:
            raise BadInput(f"{key} is computed by the client and cannot be set")
        if key in from_flags:
            raise BadInput(f"{key} is set by a flag (see --help), not by {key}=...")
        if key not in template.variables:
            import difflib  # only on this error path: keeps the normal start-up light

            close = difflib.get_close_matches(key, settable, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise BadInput(f"unknown template value {key!r}: {hint}known keys: "
                           + (", ".join(settable) or "none"))
    for key in EXTRACTION_LIMITS:  # refused here, not by the bootstrap on the cluster
        if config.template_values.get(key, "").strip():
            _positive_int(config.template_values[key], f"{key}=")
    for key, value in config.template_values.items():
        reason = why_secret(key, value)
        if reason:  # even when quiet, like a secret left out of the payload
            print(f"warning: {key}= looks like a credential ({reason}): template values are "
                  "written into the spec that OSMO stores; pass secrets as OSMO credentials "
                  "(docs/client.md, Secrets)", file=sys.stderr)
    for name, source in config.explicit.items():
        if name not in template.variables and not config.quiet:
            print(f"note: {source} has no effect: {template.path.name} does not use "
                  f"{{{{ {name} }}}}", file=sys.stderr)
    if config.nodes > 1 and "nodes" not in template.variables:
        raise BadInput(f"{template.path} never uses {{{{ nodes }}}}: --nodes {config.nodes} "
                       "would run on one node (see templates/isaaclab-inline.yaml)")
    if "payload_b64" not in template.variables:
        raise BadInput(f"{template.path} never uses {{{{ payload_b64 }}}}: the payload would "
                       "not reach the container")
    return {**from_flags, **config.template_values}


def check_overrides(config: SubmitConfig, template: Template) -> None:
    """Refuse overrides that could not arrive, or name keys our own agent cfg lacks."""
    if not config.overrides:
        return
    if "cfg_overrides" not in template.variables:
        raise BadInput(f"{template.path} never uses {{{{ cfg_overrides }}}}: the overrides "
                       f"would not reach the task (see {DEFAULT_TEMPLATE}, CFG_OVERRIDES)")
    defaults = cfg_overrides.read_agent_defaults(config.source, config.task, config.backend)
    if defaults is not None:
        cfg_overrides.check_agent_paths(config.overrides, defaults, config.backend)


def check_payload_code(config: SubmitConfig, payload: Payload) -> list[str]:
    """What the payload's own code implies, checked here rather than in the container: its
    requirements.txt, and that the task is one it registers or one the image knows. Returns
    the lines for stderr (the payload's tasks, notes)."""
    packaged = relative_names((f.arcname for f in payload.files), ARCHIVE_PREFIX)
    check_requirements(config.source, packaged)
    catalog = read_catalog(config.source, packaged, config.task_modules)
    # An evaluation or export without -t takes the checkpoint's task, unknown here.
    return [*describe(catalog), *(check_task(config.task, catalog) if config.task else [])]


def prepare(
    config: SubmitConfig, payload: Payload | None = None,
) -> tuple[str, Payload, dict[str, object], storage.Delivery, list[str]]:
    """Template + payload (built here unless given) -> delivery, validated spec text and the
    payload's task lines for stderr; writes nothing."""
    template = load_template(config.workflow)
    values = user_values(config, template)
    check_overrides(config, template)
    payload = payload or build_payload(config.source)
    task_lines = check_payload_code(config, payload)
    delivery = storage.choose(config.delivery, payload, config.payload_budget,
                              config.storage_url, local=config.local)
    if delivery.object_url and "payload_url" not in template.variables:
        raise BadInput(f"{template.path} never uses {{{{ payload_url }}}}: storage delivery "
                       "needs it as the task's url input (see templates/isaaclab-inline.yaml)")
    filled = {
        "payload_b64": "" if delivery.object_url else payload.b64,
        "payload_sha256": payload.sha256,
        "payload_url": delivery.object_url,
        "bootstrap_b64": base64.b64encode(BOOTSTRAP.read_bytes()).decode("ascii"),
        "cfg_overrides": cfg_overrides.to_spec_json(config.overrides),
    }
    spec_text = render(template, values, filled)
    problems = validate_spec(spec_text, local=config.local)
    if problems:
        raise SpecInvalid(problems)
    return spec_text, payload, values, delivery, task_lines


def run(config: SubmitConfig) -> int:
    if config.sweep_report:
        from osmo_inline import sweep_run

        return sweep_run.report(config, config.sweep_report)
    if config.sweep:
        from osmo_inline import sweep_run

        return sweep_run.run_sweep(config)
    if not (config.dry_run or config.local):
        # Imported only to submit: a dry run never starts a process (no subprocess import).
        from osmo_inline.osmo import find_osmo

        find_osmo()  # fail before writing anything when there is nothing to submit with
    if config.nodes > sweep.MAX_TASKS and not config.yes:
        raise BadInput(f"--nodes {config.nodes} is more than {sweep.MAX_TASKS} tasks: pass "
                       "--yes if you mean it")
    spec_text, payload, values, delivery, task_lines = prepare(config)
    stored = announce_and_place(config, payload, delivery, task_lines)
    if config.nodes > 1 and not config.quiet:
        for line in groups.describe(load_yaml(spec_text)):
            print(line, file=sys.stderr)
    if config.dry_run:
        print_dry_run(config, spec_text, payload, delivery, stored)
        return 0
    if config.local:
        from osmo_inline import local  # lazy: only --local needs the executor

        return local.run_spec(load_yaml(spec_text), project_dir=config.project_dir,
                              quiet=config.quiet, workflow_id=config.workflow_id)
    submit(config, spec_text, payload, values, delivery)
    return 0


def announce_and_place(config: SubmitConfig, payload: Payload, delivery: storage.Delivery,
                       task_lines: Sequence[str] = ()) -> str:
    """The payload summary (and the payload's tasks) on stderr, the payload in .tmp/ and, for
    storage delivery, in storage; returns what storage said."""
    lines = [*summary(payload), *task_lines, delivery.reason]
    for line in lines:
        if config.quiet and not line.startswith("secrets"):
            continue  # secrets left out are always worth a line, even when quiet
        print(line, file=sys.stderr)
    artifacts.write_payload(payload, config.tmp_dir)
    stored = ""
    if delivery.storage is not None:
        # Before anything is submitted or run: a failed upload leaves nothing behind in OSMO.
        stored = storage.place(delivery.storage, payload, config.tmp_dir / "storage",
                               dry_run=config.dry_run)
        if not config.quiet:
            print(stored, file=sys.stderr)
    return stored


def print_dry_run(config: SubmitConfig, spec_text: str, payload: Payload,
                   delivery: storage.Delivery, stored: str) -> None:
    if config.output == "json":
        print(json.dumps({"spec": spec_text, "payload_sha256": payload.sha256,
                          "delivery": delivery.kind, "payload_url": delivery.object_url,
                          "storage": stored,
                          "files": [f.arcname for f in payload.files],
                          "excluded": [{"path": e.path, "reason": e.describe()}
                                       for e in payload.excluded]}, indent=2))
    else:
        sys.stdout.write(spec_text)


def submit(config: SubmitConfig, spec_text: str, payload: Payload,
           values: dict[str, object], delivery: storage.Delivery,
           extra: Mapping[str, object] | None = None) -> Submission:
    """Write the spec to .tmp/, hand it to osmo, record (with `extra`) and print the result."""
    from osmo_inline import osmo

    spec_file = artifacts.write_spec(spec_text, config.tmp_dir)
    if not config.quiet:
        print(f"submitting {spec_file} ...", file=sys.stderr)
    submission = osmo.submit(spec_file, config.osmo_args)
    artifacts.record_submission(config.tmp_dir, {
        "workflow_id": submission.workflow_id, "overview": submission.overview_url,
        "payload_sha256": payload.sha256, "delivery": delivery.kind,
        "payload_url": delivery.object_url, "task": config.task,
        "parameters": values, "osmo_args": list(config.osmo_args), **(extra or {}),
    })
    _print_submission(config, submission, payload)
    return submission


def _print_submission(config: SubmitConfig, submission: Submission,
                      payload: Payload) -> None:
    workflow_id = submission.workflow_id
    if config.output == "json":
        print(json.dumps({"workflow_id": workflow_id, "overview": submission.overview_url,
                          "payload_sha256": payload.sha256}))
        return
    print(f"Workflow submitted: {workflow_id}")
    if submission.overview_url:
        print(f"Overview: {submission.overview_url}")
    print(f"Next: osmo workflow query {workflow_id}\n      osmo workflow logs {workflow_id}")


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    environ = os.environ if environ is None else environ
    try:
        return run(parse_config(argv, environ, Path.cwd()))
    except SpecInvalid as error:
        for problem in error.problems:
            print(f"{PROG}: spec invalid: {redact(problem)}", file=sys.stderr)
        return error.exit_code
    except ClientError as error:  # messages may quote a value: never print its password
        print(f"{PROG}: error: {redact(str(error))}", file=sys.stderr)
        return error.exit_code
    except OSError as error:  # unreadable source file, read-only or full disk for .tmp/
        print(f"{PROG}: error: {redact(str(error))}", file=sys.stderr)
        return BadInput.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
