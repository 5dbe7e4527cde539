"""The Kubernetes target: a Deployment and a Service per release, one Gateway API HTTPRoute per
environment whose backendRefs weights split the traffic (manifests.py renders, target.py applies)."""
