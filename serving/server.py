"""Run the WSGI app under gunicorn: one worker process with a thread pool (``gthread``).

Why gunicorn: pure Python with no dependencies, keeps connections alive for HAProxy, and on
SIGTERM stops accepting, finishes in-flight requests (up to the graceful timeout) and exits.
ONNX Runtime releases the GIL while it computes, so threads serve requests in parallel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication

from serving.config import ServingConfig

LOG_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"


class ModelServer(BaseApplication):
    def __init__(self, config: ServingConfig) -> None:
        self.config = config
        super().__init__()

    def load_config(self) -> None:
        config = self.config
        settings = {
            "bind": [f"{config.host}:{config.port}"],
            "workers": 1,
            "worker_class": "gthread",
            "threads": config.threads,
            "keepalive": config.keepalive,
            "graceful_timeout": config.graceful_timeout,
            "control_socket_disable": True,
            "proc_name": f"slipway-serving-{config.model_name}-{config.version}",
            "errorlog": "-",
            "loglevel": "info",
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Callable:
        # Runs in the worker, after the fork. ONNX Runtime must not be imported before the fork:
        # a child of a process that imported it hangs or aborts (seen with ORT 1.32).
        from serving.llm.bundle import is_tar

        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
        app: Any
        if is_tar(self.config.model):  # a language-model bundle (serving/llm)
            from serving.llm.app import LanguageModelApp

            app = LanguageModelApp(self.config)
        else:
            from serving.app import ServingApp

            app = ServingApp(self.config)
        app.start_loading()
        return app


def serve(config: ServingConfig) -> None:
    """Serve until SIGTERM or SIGINT."""
    ModelServer(config).run()
