"""Message texts: Jinja templates rendered in a sandbox, so a template can read the data it is given and
nothing else."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from models.journeys import TEMPLATES_DIR
from models.tables import Channel


@dataclass(frozen=True)
class Rendered:
    body: str
    subject: str | None = None


class TemplateRenderer:
    def __init__(self, directory: Path = TEMPLATES_DIR) -> None:
        self._env = SandboxedEnvironment(
            loader=FileSystemLoader(directory),
            undefined=StrictUndefined,
            autoescape=False,  # SMS and plain-text email
            trim_blocks=True,
            keep_trailing_newline=False,
            auto_reload=True,  # a corrected text reaches running journeys without a restart
        )

    def render(self, template: str, channel: Channel, context: dict[str, Any]) -> Rendered:
        text = self._env.get_template(f"{template}.{channel}.j2").render(context).strip()
        if channel == Channel.email:
            first, _, rest = text.partition("\n")
            if not first.startswith("Subject:"):
                raise ValueError(f"email template {template} must start with 'Subject: ...'")
            return Rendered(subject=first.removeprefix("Subject:").strip(), body=rest.strip())
        return Rendered(body=" ".join(text.split()))  # an SMS is one paragraph; spacing costs segments
