from typing import Any, Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ferkit.config import ServiceSettings
from ferkit.limits import IMAGE_MAX_PIXELS, UPLOAD_MAX_BYTES
from ferkit.vision import DEFAULT_MARGIN, ONE_FACE_MAX_SIDE


class TrainingSettings(BaseSettings):
    """The training launcher, from INFERENCE_TRAINING_<FIELD> (dicts and lists as JSON; an empty value
    keeps the default). In production Helm sets the Kubernetes fields."""

    model_config = SettingsConfigDict(env_prefix="INFERENCE_TRAINING_", extra="ignore", env_ignore_empty=True, frozen=True)

    # "local" (a subprocess chain, `make dev`), "kubernetes" (batch/v1 Jobs) or "none" (this deployment
    # trains nowhere, e.g. the chart with training disabled: a new job is refused, never run in this pod).
    launcher: Literal["local", "kubernetes", "none"] = "local"
    # Local jobs: datasets under data_dir (a job's dataset must exist there when it is asked for); runs
    # and logs written under var/.
    data_dir: str = "../shared/data"
    work_dir: str = "var/training-runs"
    log_dir: str = "var/training-logs"
    # A cancelled local job's processes get SIGTERM, then SIGKILL after this long.
    kill_after_s: float = 10.0
    # Kubernetes: how often unfinished jobs' records are brought up to date (status, progress) without
    # anyone asking, so a Job that ends and is cleaned up (ttl_seconds_after_finished) is not missed.
    poll_interval_s: float = 30.0
    # Kubernetes Jobs: where they run, their image, volumes and resources.
    namespace: str = "default"
    # The name `make images` tags for local use; the chart sets the registry's.
    image: str = "fer-training:local"
    image_pull_policy: str = "IfNotPresent"
    service_account: str = ""
    dataset_pvc: str = "fer-datasets"
    model_repository_pvc: str = "fer-model-repository"
    data_mount: str = "/data"
    model_repository_mount: str = "/models"
    # The pod's scratch volume for runs (an emptyDir).
    work_mount: str = "/work/runs"
    backoff_limit: int = 1
    ttl_seconds_after_finished: int = 86400
    active_deadline_seconds: int = 0  # 0 = no deadline
    cpu_request: str = "4"
    memory_request: str = "16Gi"
    memory_limit: str = "48Gi"
    shm_size: str = "8Gi"  # DataLoader workers and NCCL share memory through /dev/shm
    node_selector: dict[str, str] = {}
    tolerations: tuple[dict[str, Any], ...] = ()
    # Secret holding AMQP_URL for the announce step; empty = not set (announce then logs only).
    amqp_secret_name: str = ""
    amqp_secret_key: str = "url"
    extra_labels: dict[str, str] = {}


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INFERENCE_", extra="ignore", protected_namespaces=())

    service_name: str = "inference"
    grpc_port: int = 50052
    metrics_port: int = 9102
    # Triton's gRPC endpoint (host:port).
    triton_url: str = "127.0.0.1:8001"
    # Which config of a model Triton was started with: "local" (configs/local.pbtxt, the CPU Python
    # backend of `make dev`) or "" (config.pbtxt, production on GPUs). Load requests send it back to
    # Triton with the versions to serve.
    triton_config_name: str = "local"
    # A folder of <model name>.pbtxt files that, where set, is the served config instead of the model
    # repository's: the chart mounts the config it renders from its values here, so a training export
    # (which writes the repository's config.pbtxt) never changes how Triton serves.
    triton_config_dir: str = ""
    # Deadline of one inference request to Triton, and attempts when Triton is unreachable.
    triton_timeout_s: float = 10.0
    triton_attempts: int = 3
    triton_backoff_s: float = 0.2
    # Loading a version (a TorchScript model per version) can take a while on a busy node.
    triton_load_timeout_s: float = 120.0
    model_repository: str = "models"
    model_name: str = "fer_resnet18"
    # Where the promoted version of each model is kept (registry.json); empty: the model repository.
    state_dir: str = ""
    # Face detection: "retinaface" (ONNX), "haar" (OpenCV), or "auto" (RetinaFace, Haar if it cannot load).
    detector: str = "auto"
    detector_workers: int = 2
    detector_min_score: float = 0.8
    # Photos are decoded at most this long a side (a JPEG reduced while decoding, in draft mode); faces
    # are detected and cropped on that image, their boxes mapped back to the photo's pixels once. 800:
    # RetinaFace finds the same 77 faces in the 17 shared photos as at 1024, in 70% of the time.
    detector_max_side: int = 800
    max_faces: int = 32
    # Room around a detector box on every side, as a fraction of its longer side (ferkit.vision's
    # DEFAULT_MARGIN: 0.0, calibrated so detector crops frame faces as FER2013 does).
    face_margin: float = Field(default=DEFAULT_MARGIN, ge=-0.25, le=1.0)
    # Turn each face upright (eyes level) before cropping, from RetinaFace's landmarks; the Haar
    # fallback gives none, so its faces stay unaligned.
    align_faces: bool = True
    # An image with both sides at most this many pixels is one face already (a FER2013-style crop):
    # classified whole, without detection. 0: always detect (mode=face still classifies whole images).
    one_face_max_side: int = Field(default=ONE_FACE_MAX_SIDE, ge=0)
    max_image_bytes: int = UPLOAD_MAX_BYTES
    max_image_pixels: int = IMAGE_MAX_PIXELS
    # RabbitMQ (the platform's AMQP_URL): new versions announced by training jobs are loaded at once.
    # Empty: no listener (load them with LoadModel).
    amqp_url: str = Field(default="", validation_alias=AliasChoices("AMQP_URL", "INFERENCE_AMQP_URL"))
    models_queue: str = "fer.inference.model-versions"
    # The training jobs' records (migrations: `python -m services.inference.cli migrate`).
    database_url: str = "sqlite+aiosqlite:///var/inference.db"
    # Training jobs (INFERENCE_TRAINING_*).
    training: TrainingSettings = Field(default_factory=TrainingSettings)
