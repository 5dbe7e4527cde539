"""package: the release's container image — serving runtime plus the chosen model — when a Docker
environment will run it. Local-process environments serve the artifact file itself."""

import docker
from django.conf import settings

from releases import store
from releases.models import Environment, Release
from workers.context import StageContext, StageFailed
from workers.deploying import serving_artifact
from workers.shipping.image import ImageBuildError, ReleaseImageSpec, build_release_image


def run(ctx: StageContext) -> None:
    if not Environment.objects.filter(target="docker").exists():
        ctx.log("no environment uses the docker target: local instances serve the artifact file")
        return
    artifact = serving_artifact(ctx.release)
    ctx.progress(10, "building the image")
    spec = ReleaseImageSpec(release_id=str(ctx.release.pk), model_name=ctx.model.name, version=ctx.version.label,
                            model_path=store.path_for(artifact.sha256), sha256=artifact.sha256,
                            base_image=settings.SLIPWAY_BASE_IMAGE)
    try:
        built = build_release_image(docker.from_env(), spec)
    except (ImageBuildError, docker.errors.DockerException) as exc:
        raise StageFailed(f"image build: {exc}") from None
    Release.objects.filter(pk=ctx.release.pk).update(image=built.tag, image_digest=built.image_id)
    ctx.release.image = built.tag
    ctx.log(f"image {built.tag} {built.image_id} ({built.size_bytes / 1e6:.1f} MB) in {built.seconds:.1f} s")
