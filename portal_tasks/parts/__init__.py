"""The parts of `up`, each a window or a service on the host: the session (``tmux``), the env, the cluster (with
its workers on other servers, ``nodes``, and in batch jobs, ``jobs``), IPython, JupyterLab. Each builds what
its part puts into `up`'s one helper call (window argv, the lines typed), its ``--explain`` and what it says;
up/ runs them, commands/ reads their state."""
