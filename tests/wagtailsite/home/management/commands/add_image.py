"""``manage.py add_image TITLE RRGGBB``: what an editor's upload in the admin does."""

from __future__ import annotations

import io
from typing import Any

from django.core.files.images import ImageFile
from django.core.management.base import BaseCommand, CommandParser
from PIL import Image as PillowImage
from wagtail.images import get_image_model


class Command(BaseCommand):
    help = "Add a 32x24 PNG of one colour to the Wagtail image library."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("title")
        parser.add_argument("colour", help="RRGGBB")

    def handle(self, *args: Any, title: str, colour: str, **options: Any) -> None:
        buffer = io.BytesIO()
        PillowImage.new("RGB", (32, 24), "#" + colour).save(buffer, format="PNG")
        image = get_image_model()(title=title)
        image.file.save(f"{title}.png", ImageFile(buffer, name=f"{title}.png"), save=False)
        image.save()
        self.stdout.write(image.file.name)
