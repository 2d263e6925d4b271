"""Docker Swarm: an app is a service made from one entry of a compose v3 stack file; its
replicas answer on the service's name (endpoint_mode dnsrr)."""

from __future__ import annotations

from tasks.platforms.base import Platform
from tasks.platforms.swarm.replicas import SwarmReplicasRouter
from tasks.platforms.swarm.spec import SwarmTargetSpec, declared_replicas, query_variables
from tasks.platforms.swarm.target import SwarmTarget

PLATFORM = Platform(
    kind="swarm", spec=SwarmTargetSpec, target=SwarmTarget,
    routers={"replicas": SwarmReplicasRouter},
    declared_replicas=declared_replicas, query_variables=query_variables,
)
