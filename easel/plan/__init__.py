"""``easel plan``: a discrete-event model of a runtime pool as deployed (KEDA, HPA, Karpenter, agents).

profile.py  the profile file and its resolution against config.yaml into a validated :class:`Plan`
keda.py     KEDA's SQS scaler and the HPA algorithm as arithmetic (unit-tested against their docs)
arrivals.py submit times: Poisson, bursts, diurnal, a recorded trace
sim.py      the simpy model: queues, scaling, nodes, pods, agents, drain, spot interruptions
report.py   latency percentiles, node-hours busy/idle/starting, cost per 1,000 images, Pareto front
plots.py    PNG plots (queue/replicas/nodes over time, latency CDF)

Pure core code: it imports nothing of lambdas/, queue_agent/, runtime_image/ or infra/.
Import the modules themselves (``easel.plan.sim`` needs simpy, from the ``plan`` extra).
"""

from easel.plan.errors import PlanError

__all__ = ["PlanError"]
