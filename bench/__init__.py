"""Benchmarks of the pipeline against baselines and physical limits (``easel bench``, imported lazily by
the CLI). A top-level development package: it may import every layer (core, agent, runtime, Lambdas, the
local stack) and is never shipped in an image or a Lambda bundle.

Every result is a ratio against a baseline measured in the same run, because the machines these run on
are shared and noisy: absolute times are not comparable between runs. Modules:

    stats              percentiles and the summaries every bench reports
    report             rich tables and ``--json`` output
    localstack         a moto server in a child process, provisioned from a bench config
    serve              uvicorn in a thread on a loopback port that survives a restart
    synthetic_runtime  the one fake SD WebUI-dialect runtime (benches and agent tests): holds each
                       generation for T, one at a time, and records its busy time
    probe              runs an agent module with its SQS receive/delete calls timestamped
    baseline_agent     the serial baseline in the style of the stable-diffusion-on-eks queue agent
    agent              ``easel bench agent``: Easel's queue agent vs the baseline
    api                ``easel bench api``: cold import and signed local submit latency
    runtime            ``easel bench runtime``: batching, model load vs raw read, switch, UNet step
    sd15               SD 1.5-size random checkpoint (real configs, written locally) for the load bench
"""
