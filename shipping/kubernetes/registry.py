"""Release images go to a registry for a cluster to pull; pods name them by digest, never by tag."""

import docker

from shipping.image import ImageBuildError


def push_release_image(client: docker.DockerClient, tag: str, repository: str) -> str:
    """Push the local image `tag` to `repository`; returns its pinned reference repository@sha256:…"""
    if not repository:
        raise ImageBuildError("an environment uses the kubernetes target: set SLIPWAY_K8S_IMAGE_REPOSITORY to "
                              "the registry repository the cluster pulls release images from")
    remote_tag = tag.rsplit(":", 1)[-1]
    image = client.images.get(tag)
    image.tag(repository, tag=remote_tag)
    for line in client.images.push(repository, tag=remote_tag, stream=True, decode=True):
        if "error" in line:
            raise ImageBuildError(f"pushing {repository}:{remote_tag}: {line['error']}")
    image.reload()
    pinned = [d for d in image.attrs.get("RepoDigests", []) if d.startswith(f"{repository}@sha256:")]
    if not pinned:
        raise ImageBuildError(f"the registry gave no digest for {repository}:{remote_tag}")
    return pinned[0]
