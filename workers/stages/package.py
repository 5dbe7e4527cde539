"""package: the release's container image — serving runtime plus the chosen model — when a Docker
environment will run it (and pushed to SLIPWAY_K8S_IMAGE_REPOSITORY when a Kubernetes one will). Local-process
environments serve the artifact file itself."""

import docker
from django.conf import settings

from releases.candidates import serving_artifact
from releases.models import Environment, Release
from releases.storage import get_store
from shipping.image import ImageBuildError, ReleaseImageSpec, build_release_image
from shipping.kubernetes.registry import push_release_image
from workers.context import StageContext, StageFailed
from workers.deploying import monitoring_profile


def run(ctx: StageContext) -> None:
    targets = set(Environment.objects.values_list("target", flat=True))
    if not targets & {"docker", "kubernetes"}:
        ctx.log("no environment uses the docker or kubernetes target: local instances serve the artifact file")
        return
    artifact = serving_artifact(ctx.release)
    ctx.progress(10, "building the image")
    spec = ReleaseImageSpec(release_id=str(ctx.release.pk), model_name=ctx.model.name, version=ctx.version.label,
                            model_path=get_store().local_path(artifact.sha256), sha256=artifact.sha256,
                            base_image=settings.SLIPWAY_BASE_IMAGE, profile_path=monitoring_profile(ctx.release))
    try:
        client = docker.from_env()
        built = build_release_image(client, spec)
        image = built.tag
        if "kubernetes" in targets:  # the pushed reference, pinned by digest, runs in Docker too
            ctx.progress(80, "pushing the image for the cluster")
            image = push_release_image(client, built.tag, settings.SLIPWAY_K8S_IMAGE_REPOSITORY)
    except (ImageBuildError, docker.errors.DockerException) as exc:
        raise StageFailed(f"image build: {exc}") from None
    Release.objects.filter(pk=ctx.release.pk).update(image=image, image_digest=built.image_id)
    ctx.release.image = image
    ctx.log(f"image {image} {built.image_id} ({built.size_bytes / 1e6:.1f} MB) in {built.seconds:.1f} s")
