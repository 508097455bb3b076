# The control-plane image: controller, monitor, Flower and (with libvirt) agents.
FROM python:3.11-slim
# ipmitool: the ipmi fence agent runs on the controller
RUN apt-get update && apt-get install -y --no-install-recommends gcc pkg-config libvirt-dev ipmitool \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY fleet ./fleet
COPY workers ./workers
COPY tasks ./tasks
RUN pip install --no-cache-dir '.[libvirt]'
ENTRYPOINT ["fleet"]
