"""Model servers as Docker containers: one container per release, from the release's image.

Containers share the host's network (no bridge here) and each listens on its own port on
loopback, where the local HAProxy reaches it. They run as a non-root user on a read-only root
filesystem with a small tmpfs, no capabilities, and memory and CPU limits.
"""

from __future__ import annotations

import re

import docker
from docker.errors import APIError, ImageNotFound, NotFound

from shipping.image import LABEL_PREFIX, SERVING_USER
from shipping.targets import Instance, InstanceSpec, Target, TargetError


class DockerTarget(Target):
    kind = "docker"

    def __init__(
        self,
        client: docker.DockerClient | None = None,
        memory: str = "1g",
        cpus: float = 1.0,
        tmpfs_size: str = "64m",
    ) -> None:
        self.client = client or docker.from_env()
        self.memory, self.cpus, self.tmpfs_size = memory, cpus, tmpfs_size

    def start(self, spec: InstanceSpec) -> Instance:
        if spec.image is None:
            raise TargetError(f"release {spec.release_id}: a Docker instance needs an image")
        name = re.sub(r"[^A-Za-z0-9_.-]", "-", f"slipway-{spec.environment}-{spec.release_id}-{spec.port}")
        try:
            container = self.client.containers.run(
                spec.image,
                detach=True,
                name=name,
                network_mode="host",
                user=SERVING_USER,
                read_only=True,
                tmpfs={"/tmp": f"rw,nosuid,nodev,size={self.tmpfs_size}"},  # noqa: S108 (in the container)
                mem_limit=self.memory,
                nano_cpus=int(self.cpus * 1e9),
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                restart_policy={"Name": "unless-stopped"},
                environment={
                    "SLIPWAY_HOST": spec.host,
                    "SLIPWAY_PORT": str(spec.port),
                    "SLIPWAY_THREADS": str(spec.threads),
                    "SLIPWAY_INTRA_OP_THREADS": str(spec.intra_op_threads),
                },
                labels={
                    f"{LABEL_PREFIX}environment": spec.environment,
                    f"{LABEL_PREFIX}instance-release-id": spec.release_id,
                    f"{LABEL_PREFIX}port": str(spec.port),
                },
            )
        except ImageNotFound:
            raise TargetError(f"release {spec.release_id}: image {spec.image} is not present") from None
        except APIError as error:
            raise TargetError(f"release {spec.release_id}: Docker refused to start {name}: {error}") from error
        return Instance(self.kind, container.id, spec.release_id, spec.environment, spec.host, spec.port)

    def is_alive(self, instance: Instance) -> bool:
        try:
            state = self.client.api.inspect_container(instance.handle)["State"]
        except NotFound:
            return False
        # A container that crashed and is being restarted is not alive for our purposes.
        return state["Running"] and not state["Restarting"]

    def stop(self, instance: Instance, timeout: float = 30.0) -> None:
        """SIGTERM (the server drains in-flight requests), SIGKILL after ``timeout``, then remove."""
        try:
            container = self.client.containers.get(instance.handle)
        except NotFound:
            return
        container.stop(timeout=int(timeout))
        container.remove()

    def logs(self, instance: Instance, lines: int = 40) -> str:
        try:
            return self.client.containers.get(instance.handle).logs(tail=lines).decode(errors="replace")
        except NotFound:
            return "(container is gone)"
