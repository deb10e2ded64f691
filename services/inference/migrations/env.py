from ferkit.db import run_env
from services.inference.training.records import Base

run_env(Base.metadata, version_table="alembic_version_inference")
