from ferkit.db import run_env
from services.reports.models import Base

run_env(Base.metadata, version_table="alembic_version_reports")
