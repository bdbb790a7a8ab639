"""Configuration from the environment and `.env`, under the names in docs/DESIGN.md."""

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / ".data"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    temporal_address: str = Field(default="localhost:7233", validation_alias="TEMPORAL_ADDRESS")
    temporal_namespace: str = Field(default="default", validation_alias="TEMPORAL_NAMESPACE")
    temporal_task_queue: str = Field(default="comeback", validation_alias="TEMPORAL_TASK_QUEUE")
    temporal_api_key: str | None = Field(default=None, validation_alias="TEMPORAL_API_KEY")
    # TLS is on whenever an API key is set (Temporal Cloud); TEMPORAL_TLS=true forces it for mTLS-less proxies.
    temporal_tls: bool | None = Field(default=None, validation_alias="TEMPORAL_TLS")

    database_url: str = Field(default=f"sqlite:///{DATA_DIR / 'comeback.db'}", validation_alias="COMEBACK_DATABASE_URL")
    public_url: str = Field(default="http://localhost:8000", validation_alias="COMEBACK_PUBLIC_URL")
    api_token: str | None = Field(default=None, validation_alias="COMEBACK_API_TOKEN")
    journeys_path: Path = Field(default=ROOT / "config" / "journeys.toml", validation_alias="COMEBACK_JOURNEYS")
    default_region: str = Field(default="US", validation_alias="COMEBACK_DEFAULT_REGION")

    twilio_account_sid: str | None = Field(default=None, validation_alias="TWILIO_ACCOUNT_SID")
    twilio_auth_token: str | None = Field(default=None, validation_alias="TWILIO_AUTH_TOKEN")
    twilio_from_number: str | None = Field(default=None, validation_alias="TWILIO_FROM_NUMBER")
    twilio_messaging_service_sid: str | None = Field(default=None, validation_alias="TWILIO_MESSAGING_SERVICE_SID")
    twilio_api_base_url: str | None = Field(default=None, validation_alias="TWILIO_API_BASE_URL")
    # Texts per second this worker process sends through Twilio (unset: as fast as it can). Twilio sends 1/s per
    # long code, 3/s per toll-free number, 100/s per short code; several workers share the sender's rate.
    twilio_max_rate: float | None = Field(default=None, gt=0, validation_alias="TWILIO_MAX_RATE")
    sendgrid_api_key: str | None = Field(default=None, validation_alias="SENDGRID_API_KEY")
    sendgrid_from_email: str | None = Field(default=None, validation_alias="SENDGRID_FROM_EMAIL")
    sendgrid_webhook_public_key: str | None = Field(default=None, validation_alias="SENDGRID_WEBHOOK_PUBLIC_KEY")
    sendgrid_unsubscribe_group_id: int | None = Field(default=None, validation_alias="SENDGRID_UNSUBSCRIBE_GROUP_ID")
    sendgrid_api_host: str | None = Field(default=None, validation_alias="SENDGRID_API_HOST")

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # `FOO=` in a .env file or compose file means "not set", not "set to the empty string".
        return None if value == "" else value

    @property
    def temporal_tls_enabled(self) -> bool:
        return self.temporal_tls if self.temporal_tls is not None else self.temporal_api_key is not None


@lru_cache
def get_settings() -> Settings:
    return Settings()
