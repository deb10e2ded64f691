from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from ferkit.config import ServiceSettings
from ferkit.vision import DEFAULT_MARGIN, ONE_FACE_MAX_SIDE


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
    # Detection runs on a copy scaled down to this longest side (boxes are mapped back).
    detector_max_side: int = 1024
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
    # The annotated PNG is drawn at most this large (longest side) to keep it quick to encode and send.
    annotated_max_side: int = 2048
    max_image_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    # RabbitMQ (the platform's AMQP_URL): new versions announced by training jobs are loaded at once.
    # Empty: no listener (load them with LoadModel).
    amqp_url: str = Field(default="", validation_alias=AliasChoices("AMQP_URL", "INFERENCE_AMQP_URL"))
    models_queue: str = "fer.inference.model-versions"
    # Training jobs: "local" (a subprocess chain) or "kubernetes" (batch/v1 Jobs, configured by the
    # INFERENCE_TRAINING_* variables the launcher reads). Local jobs read datasets under
    # training_data_dir and write their runs and logs under var/.
    training_launcher: str = "local"
    training_data_dir: str = "../shared/data"
    training_work_dir: str = "var/training-runs"
    training_log_dir: str = "var/training-logs"
