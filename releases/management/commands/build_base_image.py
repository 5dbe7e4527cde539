from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = ("Build a local base image (Debian bookworm with Python, by debootstrap) and the serving runtime's "
            "dependency image, for machines that cannot pull python:3.11-slim; then set "
            "SLIPWAY_BASE_IMAGE to the tag it prints.")

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("--tag", default="slipway-base:bookworm")
        parser.add_argument("--force", action="store_true", help="rebuild the base even if it exists")

    def handle(self, tag: str, force: bool, **options) -> None:
        import docker

        from shipping.base_image import build_local_base_image
        from shipping.image import ensure_deps_image

        client = docker.from_env()
        self.stdout.write(f"base image {tag}: {build_local_base_image(client, tag, force=force)}")
        self.stdout.write(f"dependencies image: {ensure_deps_image(client, tag)}")
