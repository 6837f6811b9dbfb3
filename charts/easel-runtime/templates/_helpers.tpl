{{/*
Helpers of the easel-runtime chart. Each takes the root context (`.`) unless its comment says otherwise.
*/}}

{{/*
easel-runtime.name: the chart name (or `nameOverride`), for the `app.kubernetes.io/name` label.
*/}}
{{- define "easel-runtime.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
easel-runtime.fullname: the name of every object (default: the release name, `<stack>-<runtime>`, which is
also `easel.naming.Names.release()` and `.service_account()`). Cluster-scoped objects use it too.
*/}}
{{- define "easel-runtime.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 56 | trimSuffix "-" -}}
{{- end -}}

{{/*
easel-runtime.chart: `<chart>-<version>` for the `helm.sh/chart` label.
*/}}
{{- define "easel-runtime.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
easel-runtime.selectorLabels: the labels that select the pool's pods (Deployment, PDB, NetworkPolicy).
*/}}
{{- define "easel-runtime.selectorLabels" -}}
app.kubernetes.io/name: {{ include "easel-runtime.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
easel.dev/runtime: {{ .Values.runtime.name }}
{{- end -}}

{{/*
easel-runtime.labels: the common labels of every object.
*/}}
{{- define "easel-runtime.labels" -}}
helm.sh/chart: {{ include "easel-runtime.chart" . }}
{{ include "easel-runtime.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: easel
{{- end -}}

{{/*
easel-runtime.serviceAccountName: the pod's service account (the EKS Pod Identity association names it).
*/}}
{{- define "easel-runtime.serviceAccountName" -}}
{{- default (include "easel-runtime.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/*
easel-runtime.opsServiceAccountName: the service account of the cost guard and the drain hook.
*/}}
{{- define "easel-runtime.opsServiceAccountName" -}}
{{- default (printf "%s-ops" (include "easel-runtime.fullname" .)) .Values.ops.serviceAccountName -}}
{{- end -}}

{{/*
easel-runtime.image: an image reference from one `images.*` entry (pass the entry, not the root):
`repository:tag`, or `repository:tag@digest` when a digest is set (the digest then decides what is pulled).
*/}}
{{- define "easel-runtime.image" -}}
{{- if .digest -}}
{{- printf "%s:%s@%s" .repository .tag .digest -}}
{{- else -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}
{{- end -}}

{{/*
easel-runtime.terminationGracePeriodSeconds: task timeout + drain margin. The agent's `GET /drain` (the preStop
hook of both containers) blocks until the task in flight finishes, which takes at most the task timeout, so
the grace period must never be shorter than that.
*/}}
{{- define "easel-runtime.terminationGracePeriodSeconds" -}}
{{- $timeout := int .Values.runtime.taskTimeoutSeconds -}}
{{- $grace := add $timeout (int .Values.runtime.drainMarginSeconds) -}}
{{- if lt (int $grace) $timeout -}}
{{- fail (printf "runtime.drainMarginSeconds: grace period %d would be shorter than the task timeout %d" $grace $timeout) -}}
{{- end -}}
{{- $grace -}}
{{- end -}}

{{/*
easel-runtime.agentShutdownGraceSeconds: how long the agent lets a started task run after a drain:
`agent.shutdownGraceSeconds`, or the task timeout when 0. Never more than the task timeout, so it always
ends inside the pod's termination grace period.
*/}}
{{- define "easel-runtime.agentShutdownGraceSeconds" -}}
{{- $timeout := int .Values.runtime.taskTimeoutSeconds -}}
{{- $grace := int .Values.agent.shutdownGraceSeconds -}}
{{- if gt $grace $timeout -}}
{{- fail (printf "agent.shutdownGraceSeconds: %d is more than runtime.taskTimeoutSeconds %d" $grace $timeout) -}}
{{- end -}}
{{- ternary $timeout $grace (eq $grace 0) -}}
{{- end -}}

{{/*
easel-runtime.modelsJson: `EASEL_MODELS`, the JSON object model name -> store path.
*/}}
{{- define "easel-runtime.modelsJson" -}}
{{- $models := dict -}}
{{- range .Values.runtime.models -}}
{{- $_ := set $models .name .path -}}
{{- end -}}
{{- toJson $models -}}
{{- end -}}

{{/*
easel-runtime.telemetryEnv: the OpenTelemetry environment of one container (`list $ "<service name>"`), when
`telemetry.enabled`: OTLP/HTTP to the collector on the pod's node (the CDK app's ADOT DaemonSet listens on
the node's port 4318) unless `telemetry.otlpEndpoint` names another, parent-based ratio sampling, and the
resource attributes X-Ray and the dashboard group by (release, runtime, namespace, pod, node).
*/}}
{{- define "easel-runtime.telemetryEnv" -}}
{{- $ := index . 0 -}}
{{- $service := index . 1 -}}
{{- if $.Values.telemetry.enabled }}
- name: EASEL_TRACES
  value: otlp
- name: EASEL_NODE_IP
  valueFrom:
    fieldRef:
      fieldPath: status.hostIP
- name: EASEL_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: EASEL_NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: OTEL_SERVICE_NAME
  value: {{ $service | quote }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ default "http://$(EASEL_NODE_IP):4318" $.Values.telemetry.otlpEndpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: http/protobuf
- name: OTEL_TRACES_SAMPLER
  value: parentbased_traceidratio
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ $.Values.telemetry.samplingRatio | toString | quote }}
{{- $attrs := dict "service.namespace" (include "easel-runtime.fullname" $) "easel.runtime" $.Values.runtime.name "k8s.namespace.name" $.Release.Namespace "k8s.pod.name" "$(EASEL_POD_NAME)" "k8s.node.name" "$(EASEL_NODE_NAME)" }}
{{- $attrs = merge (deepCopy (default dict $.Values.telemetry.resourceAttributes)) $attrs }}
{{- $pairs := list }}
{{- range $key := keys $attrs | sortAlpha }}
{{- $pairs = append $pairs (printf "%s=%s" $key (get $attrs $key)) }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $pairs | quote }}
{{- end }}
{{- end -}}

{{/*
easel-runtime.runtimeCommand: the runtime container's command as a YAML list, or nothing when the image's
entrypoint runs (`sdwebui`/`comfyui` without `runtime.command`; `easel-runtime.stockArgs` are the `args`).
Default for `kind: diffusers`: `python -m runtime_image.server` on all interfaces (kubelet probes reach the pod IP; the
NetworkPolicy denies other ingress), with `--model <store path>` for a fixed-model runtime: the runtime only
sees the models dir, where a model is its store path (the `sd_model_checkpoint` value). Tenants' private LoRAs
(uploaded by the agent; the models mount is read-only) go to `/tmp/private-loras` on the scratch emptyDir.
`runtime.command` replaces the default; `runtime.extraArgs` are appended.
*/}}
{{- define "easel-runtime.runtimeCommand" -}}
{{- $cmd := list -}}
{{- if and .Values.runtime.command (ne .Values.runtime.kind "diffusers") -}}
{{- toYaml .Values.runtime.command -}}
{{- else if .Values.runtime.command -}}
{{- $cmd = .Values.runtime.command -}}
{{- else if eq .Values.runtime.kind "diffusers" -}}
{{- $cmd = list "python" "-m" "runtime_image.server" "--models-dir" .Values.modelsVolume.mountPath "--host" "0.0.0.0" "--port" (toString (int .Values.runtime.port)) "--private-loras-dir" "/tmp/private-loras" -}}
{{- if not .Values.runtime.dynamicModels -}}
{{- $cmd = concat $cmd (list "--model" (first .Values.runtime.models).path) -}}
{{- end -}}
{{- end -}}
{{- if $cmd -}}
{{- toYaml (concat $cmd .Values.runtime.extraArgs) -}}
{{- end -}}
{{- end -}}

{{/*
easel-runtime.startupFailureThreshold: startup probe failures allowed (10 s period) to cover the start-up
allowance (`easel-runtime.startupTimeoutSeconds`), rounded up.
*/}}
{{- define "easel-runtime.startupFailureThreshold" -}}
{{- div (add (int (include "easel-runtime.startupTimeoutSeconds" .)) 9) 10 -}}
{{- end -}}

{{/*
Runtime kinds: the defaults each kind brings (easel/kinds.py holds the same table; tests/charts compares).
easel-runtime.healthPath: `runtime.healthPath`, or the kind's endpoint the probes GET.
*/}}
{{- define "easel-runtime.healthPath" -}}
{{- if .Values.runtime.healthPath -}}{{ .Values.runtime.healthPath }}
{{- else if eq .Values.runtime.kind "sdwebui" -}}/sdapi/v1/sd-models
{{- else if eq .Values.runtime.kind "comfyui" -}}/system_stats
{{- else -}}/health
{{- end -}}
{{- end -}}

{{/*
easel-runtime.startupTimeoutSeconds: `runtime.startupTimeoutSeconds`, or the kind's start-up allowance.
*/}}
{{- define "easel-runtime.startupTimeoutSeconds" -}}
{{- if .Values.runtime.startupTimeoutSeconds -}}{{ int .Values.runtime.startupTimeoutSeconds }}
{{- else if eq .Values.runtime.kind "sdwebui" -}}1800
{{- else -}}1200
{{- end -}}
{{- end -}}

{{/*
easel-runtime.stockArgs: the container `args` of a stock image (sdwebui, comfyui) as a YAML list:
`runtime.args` or the kind's, then `runtime.extraArgs`. Empty for diffusers (its command carries them).
*/}}
{{- define "easel-runtime.stockArgs" -}}
{{- $port := toString (int .Values.runtime.port) -}}
{{- $args := .Values.runtime.args -}}
{{- if eq .Values.runtime.kind "diffusers" -}}
{{- $args = list -}}
{{- else if not $args -}}
{{- if eq .Values.runtime.kind "sdwebui" -}}
{{- $args = list "--api" "--nowebui" "--listen" "--port" $port "--data-dir" "/data" "--skip-prepare-environment" "--no-download-sd-model" -}}
{{- else -}}
{{- $args = list "--listen" "0.0.0.0" "--port" $port "--base-directory" "/data" -}}
{{- end -}}
{{- end -}}
{{- if ne .Values.runtime.kind "diffusers" -}}
{{- toYaml (concat $args .Values.runtime.extraArgs) -}}
{{- end -}}
{{- end -}}

{{/*
easel-runtime.modelMounts: the runtime container's read-only mounts of the models volume, as a YAML list of
volumeMounts: `runtime.modelMounts`, or the kind's layout (the directories where the stock image looks).
*/}}
{{- define "easel-runtime.modelMounts" -}}
{{- $mounts := .Values.runtime.modelMounts -}}
{{- if not $mounts -}}
{{- if eq .Values.runtime.kind "sdwebui" -}}
{{- range $dir := list "Stable-diffusion" "Lora" "ControlNet" "ESRGAN" -}}
{{- $mounts = append $mounts (dict "subPath" $dir "mountPath" (printf "/data/models/%s" $dir)) -}}
{{- end -}}
{{- else if eq .Values.runtime.kind "comfyui" -}}
{{- range $dir := list "checkpoints" "loras" "controlnet" "upscale_models" "vae" -}}
{{- $mounts = append $mounts (dict "subPath" $dir "mountPath" (printf "/data/models/%s" $dir)) -}}
{{- end -}}
{{- else -}}
{{- $mounts = list (dict "subPath" "" "mountPath" .Values.modelsVolume.mountPath) -}}
{{- end -}}
{{- end -}}
{{- $out := list -}}
{{- range $mounts -}}
{{- $m := dict "name" "models" "mountPath" .mountPath "readOnly" true -}}
{{- if .subPath -}}{{- $_ := set $m "subPath" .subPath -}}{{- end -}}
{{- $out = append $out $m -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/*
easel-runtime.amiFamily: `Bottlerocket` or `AL2023`, from the family part of `nodePool.amiAlias`.
*/}}
{{- define "easel-runtime.amiFamily" -}}
{{- $family := first (splitList "@" .Values.nodePool.amiAlias) -}}
{{- if eq $family "bottlerocket" -}}Bottlerocket{{- else if eq $family "al2023" -}}AL2023{{- else -}}
{{- fail (printf "nodePool.amiAlias: unsupported AMI family %q (bottlerocket or al2023)" $family) -}}
{{- end -}}
{{- end -}}

{{/*
easel-runtime.nodePoolLimits: `nodePool.limits`, or by default enough GPUs for `scaling.maxReplicas` pods plus
one spare (a rolling update or a spot replacement), as YAML.
*/}}
{{- define "easel-runtime.nodePoolLimits" -}}
{{- if .Values.nodePool.limits -}}
{{- toYaml .Values.nodePool.limits -}}
{{- else -}}
nvidia.com/gpu: {{ mul (add (int .Values.scaling.maxReplicas) 1) (int .Values.runtime.gpus) }}
{{- end -}}
{{- end -}}

{{/*
easel-runtime.discoveryTags: the given tag map (pass a dict with `tags` and `root`), or by default
`karpenter.sh/discovery: <nodePool.clusterName>`, as YAML.
*/}}
{{- define "easel-runtime.discoveryTags" -}}
{{- if .tags -}}
{{- toYaml .tags -}}
{{- else -}}
karpenter.sh/discovery: {{ .root.Values.nodePool.clusterName | quote }}
{{- end -}}
{{- end -}}

{{/*
easel-runtime.ebs: one encrypted gp3 EBS volume of the given size (pass a dict with `size` and `root`).
*/}}
{{- define "easel-runtime.ebs" -}}
volumeSize: {{ printf "%dGi" (int .size) }}
volumeType: gp3
encrypted: true
deleteOnTermination: true
{{- with .root.Values.nodePool.blockDeviceKmsKeyId }}
kmsKeyID: {{ . | quote }}
{{- end }}
{{- end -}}

{{/*
easel-runtime.validate: checks across values that the JSON schema cannot express; fails naming the key.
Included once, from the Deployment.
*/}}
{{- define "easel-runtime.validate" -}}
{{- if gt (int .Values.scaling.minReplicas) (int .Values.scaling.maxReplicas) -}}
{{- fail (printf "scaling.minReplicas: %d is more than scaling.maxReplicas %d" (int .Values.scaling.minReplicas) (int .Values.scaling.maxReplicas)) -}}
{{- end -}}
{{- $seen := dict -}}
{{- range $i, $m := .Values.runtime.models -}}
{{- if hasKey $seen $m.name -}}
{{- fail (printf "runtime.models.%d.name: duplicate model %q" $i $m.name) -}}
{{- end -}}
{{- $_ := set $seen $m.name true -}}
{{- end -}}
{{- if and .Values.scaling.roleArn (eq .Values.scaling.identityOwner "workload") -}}
{{- fail "scaling.roleArn: KEDA takes either a roleArn or identityOwner workload, not both; set scaling.identityOwner to keda" -}}
{{- end -}}
{{- if and (eq .Values.scaling.identityOwner "workload") .Values.serviceAccount.create (not .Values.serviceAccount.roleArn) -}}
{{- fail "serviceAccount.roleArn: required when scaling.identityOwner is workload (KEDA assumes that role)" -}}
{{- end -}}
{{- end -}}

{{/*
easel-runtime.opsPodSpec: the pod-level fields shared by the cost guard and the drain hook (the ops service
account with its token mounted: both call the Kubernetes API), as YAML.
*/}}
{{- define "easel-runtime.opsPodSpec" -}}
serviceAccountName: {{ include "easel-runtime.opsServiceAccountName" . }}
automountServiceAccountToken: true
restartPolicy: Never
enableServiceLinks: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.ops.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end -}}

{{/*
easel-runtime.opsContainer: the container-level fields shared by the cost guard and the drain hook, as YAML.
*/}}
{{- define "easel-runtime.opsContainer" -}}
resources:
  requests:
    cpu: 50m
    memory: 128Mi
  limits:
    memory: 256Mi
securityContext:
  allowPrivilegeEscalation: false
  privileged: false
  runAsNonRoot: true
  readOnlyRootFilesystem: true
  capabilities:
    drop:
      - ALL
{{- end -}}
