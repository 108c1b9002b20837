"""The platform's parts, each a small module, and the facade over them that the
gateway and the admin API use. The composition root (``skiff.server``) builds
the parts and passes them in; no part builds its own collaborators.

- ``registry``: apps, their locked revisions and routes
- ``deploy``: the deploy pipeline, restore, rollback, delete, secret rotation
- ``invoke``: one invocation to a pool, recorded
- ``logsink``: app output (rate limit, escaping), platform and egress lines
- ``sdkcalls``: skiff.sdk calls in each app's fair share of threads
- ``hooks``: what happens when an instance logs, calls or dies
- ``views``: what the admin API shows
"""

from skiff.platform.facade import Parts, Platform
from skiff.platform.registry import App, Registry, Revision

__all__ = ["App", "Parts", "Platform", "Registry", "Revision"]
