"""Model servers as Docker containers: one container per release, from the release's image.

Each container gets a bridge network of its own and listens on port 8000 inside it, published on
the instance's host address and port, where the local HAProxy reaches it: a model server sees no
other container and nothing the host serves on loopback (PostgreSQL, Redis, Slipway). Where the
Engine cannot make a bridge network, the container shares the host's network and listens on its
own loopback port (``network`` records which). They run as a non-root user on a read-only root
filesystem with a tmpfs for the private copy of the model, no capabilities, and memory and CPU
limits.

Each container carries labels of what it serves (environment, release, host, port) and, when the target
is given one, its owner: the installation that started it. `started` lists that owner's containers only,
so the reaper of servers no record references never touches a container another installation (or
anything else) started on the same Engine.
"""

from __future__ import annotations

import logging
import re

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from shipping.image import LABEL_PREFIX, SERVING_USER
from shipping.targets import Instance, InstanceSpec, Started, Target, TargetError

log = logging.getLogger(__name__)
CONTAINER_PORT = 8000
NETWORK_PREFIX = "slipway-net-"
OWNER_LABEL = f"{LABEL_PREFIX}owner"


class DockerTarget(Target):
    kind = "docker"

    def __init__(
        self,
        client: docker.DockerClient | None = None,
        memory: str = "1g",
        cpus: float = 1.0,
        tmpfs_size: str | None = None,
        owner: str = "",
    ) -> None:
        self.client = client or docker.from_env()
        self.owner = owner  # the OWNER_LABEL of the containers it starts; none: it lists none as its own
        # The tmpfs holds the private copy of the model while it loads; it counts against the memory limit.
        self.memory, self.cpus, self.tmpfs_size = memory, cpus, tmpfs_size or memory

    def start(self, spec: InstanceSpec) -> Instance:
        if spec.image is None:
            raise TargetError(f"release {spec.release_id}: a Docker instance needs an image")
        name = re.sub(r"[^A-Za-z0-9_.-]", "-", f"slipway-{spec.environment}-{spec.release_id}-{spec.port}")
        bridge = self._bridge(name)
        listen = ("0.0.0.0", CONTAINER_PORT) if bridge else (spec.host, spec.port)  # noqa: S104 (its own network)
        placement = ({"network": bridge, "ports": {f"{CONTAINER_PORT}/tcp": (spec.host, spec.port)}} if bridge
                     else {"network_mode": "host"})
        try:
            container = self.client.containers.run(
                spec.image,
                detach=True,
                name=name,
                **placement,
                user=SERVING_USER,
                read_only=True,
                tmpfs={"/tmp": f"rw,nosuid,nodev,size={self.tmpfs_size}"},  # noqa: S108 (in the container)
                mem_limit=self.memory,
                nano_cpus=int(self.cpus * 1e9),
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                restart_policy={"Name": "unless-stopped"},
                environment={
                    "SLIPWAY_HOST": listen[0],
                    "SLIPWAY_PORT": str(listen[1]),
                    "SLIPWAY_WORKDIR": "/tmp",  # noqa: S108 (the container's own tmpfs)
                    "SLIPWAY_CONTROL_TOKEN": spec.control_token,
                    "SLIPWAY_THREADS": str(spec.threads),
                    "SLIPWAY_INTRA_OP_THREADS": str(spec.intra_op_threads),
                },
                labels={
                    f"{LABEL_PREFIX}environment": spec.environment,
                    f"{LABEL_PREFIX}instance-release-id": spec.release_id,
                    f"{LABEL_PREFIX}host": spec.host,
                    f"{LABEL_PREFIX}port": str(spec.port),
                    **({OWNER_LABEL: self.owner} if self.owner else {}),
                },
            )
        except ImageNotFound:
            self._remove_bridge(bridge)
            raise TargetError(f"release {spec.release_id}: image {spec.image} is not present") from None
        except APIError as error:
            self._remove_bridge(bridge)
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
        networks = list(container.attrs["NetworkSettings"]["Networks"])
        container.stop(timeout=int(timeout))
        container.remove()
        for network in networks:
            if network.startswith(NETWORK_PREFIX):
                self._remove_bridge(network)

    def started(self) -> list[Started]:
        """This owner's containers, running or not (a crashed one still holds its network), with when each
        was created."""
        if not self.owner:
            return []
        try:
            found = self.client.api.containers(all=True, filters={"label": f"{OWNER_LABEL}={self.owner}"})
        except DockerException as error:
            raise TargetError(f"Docker did not list the containers of {self.owner}: {error}") from error
        return [Started(self._instance(container["Id"], container["Labels"]), float(container["Created"]))
                for container in found]

    def _instance(self, container_id: str, labels: dict[str, str]) -> Instance:
        return Instance(self.kind, container_id, labels[f"{LABEL_PREFIX}instance-release-id"],
                        labels[f"{LABEL_PREFIX}environment"], labels[f"{LABEL_PREFIX}host"],
                        int(labels[f"{LABEL_PREFIX}port"]))

    def _bridge(self, name: str) -> str | None:
        """A bridge network for one container, or None where the Engine cannot make one."""
        network = NETWORK_PREFIX + name.removeprefix("slipway-")
        try:
            self.client.networks.get(network)
        except NotFound:
            try:
                self.client.networks.create(network, driver="bridge", labels={f"{LABEL_PREFIX}network": "instance"})
            except APIError as error:
                log.warning("no bridge network (%s); the container shares the host's network", error)
                return None
        return network

    def _remove_bridge(self, network: str | None) -> None:
        if network is None:
            return
        try:
            self.client.networks.get(network).remove()
        except (NotFound, APIError) as error:
            log.warning("network %s not removed: %s", network, error)

    def logs(self, instance: Instance, lines: int = 40) -> str:
        try:
            return self.client.containers.get(instance.handle).logs(tail=lines).decode(errors="replace")
        except NotFound:
            return "(container is gone)"
