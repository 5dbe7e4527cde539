"""Slipway's domain records; see DESIGN.md, section Domain."""

from releases.models.audit import AuditEvent
from releases.models.canary import Canary
from releases.models.catalog import Artifact, Model, ModelVersion, ReleasePolicy
from releases.models.deploy import Deployment, Environment, Service, ServingSample, TrafficChange
from releases.models.drill import RollbackDrill
from releases.models.pipeline import Approval, GateCheck, Metric, Release, StageRun
from releases.models.tokens import ApiToken

__all__ = [
    "ApiToken",
    "Approval",
    "Artifact",
    "AuditEvent",
    "Canary",
    "Deployment",
    "Environment",
    "GateCheck",
    "Metric",
    "Model",
    "ModelVersion",
    "Release",
    "ReleasePolicy",
    "RollbackDrill",
    "Service",
    "ServingSample",
    "StageRun",
    "TrafficChange",
]
