"""Slipway's domain records; see DESIGN.md, section Domain."""

from releases.models.audit import AuditEvent
from releases.models.catalog import Artifact, Model, ModelVersion, ReleasePolicy
from releases.models.deploy import Deployment, Environment, ServingSample, TrafficChange
from releases.models.pipeline import Approval, GateCheck, Metric, Release, StageRun
from releases.models.tokens import ApiToken

__all__ = [
    "ApiToken",
    "Approval",
    "Artifact",
    "AuditEvent",
    "Deployment",
    "Environment",
    "GateCheck",
    "Metric",
    "Model",
    "ModelVersion",
    "Release",
    "ReleasePolicy",
    "ServingSample",
    "StageRun",
    "TrafficChange",
]
