{{- define "fer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fer.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels. Call with (dict "root" $ "component" "gateway"). */}}
{{- define "fer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fer.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "fer.labels" -}}
{{ include "fer.selectorLabels" . }}
app.kubernetes.io/part-of: fer-platform
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Image reference. Call with (dict "root" $ "image" .Values.gateway.image). */}}
{{- define "fer.image" -}}
{{- $tag := .image.tag | default .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- if .root.Values.image.registry -}}
{{- printf "%s/%s:%s" .root.Values.image.registry .image.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Secret names, honouring existingSecret. */}}
{{- define "fer.jwtSecret" -}}
{{- .Values.auth.jwt.existingSecret | default (printf "%s-jwt" (include "fer.fullname" .)) -}}
{{- end -}}
{{- define "fer.adminSecret" -}}
{{- .Values.auth.admin.existingSecret | default (printf "%s-admin" (include "fer.fullname" .)) -}}
{{- end -}}
{{- define "fer.authDbSecret" -}}
{{- .Values.auth.database.existingSecret | default (printf "%s-auth-db" (include "fer.fullname" .)) -}}
{{- end -}}
{{- define "fer.inferenceDbSecret" -}}
{{- .Values.inference.database.existingSecret | default (printf "%s-inference-db" (include "fer.fullname" .)) -}}
{{- end -}}
{{- define "fer.reportsDbSecret" -}}
{{- .Values.reports.database.existingSecret | default (printf "%s-reports-db" (include "fer.fullname" .)) -}}
{{- end -}}
{{- define "fer.amqpSecret" -}}
{{- .Values.amqp.existingSecret | default (printf "%s-amqp" (include "fer.fullname" .)) -}}
{{- end -}}

{{- define "fer.adminEnabled" -}}
{{- if or .Values.auth.admin.existingSecret .Values.auth.admin.email -}}true{{- end -}}
{{- end -}}

{{/*
A secret value that survives upgrades: the given value, else the one already in the cluster,
else a new random one. Call with (dict "root" $ "secret" NAME "key" KEY "value" GIVEN).
*/}}
{{- define "fer.persistentSecretValue" -}}
{{- if .value -}}
{{- .value -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret -}}
{{- if and $existing (index $existing.data .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum 32 -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "fer.modelRepositoryClaim" -}}
{{- .Values.modelRepository.existingClaim | default (printf "%s-model-repository" (include "fer.fullname" .)) -}}
{{- end -}}
{{- define "fer.datasetsClaim" -}}
{{- .Values.training.datasets.existingClaim | default (printf "%s-datasets" (include "fer.fullname" .)) -}}
{{- end -}}

{{/* Jobs run beside the release: they mount its namespaced model-repository claim. */}}
{{- define "fer.trainingNamespace" -}}
{{- .Release.Namespace -}}
{{- end -}}

{{/* Container security context of the platform's own containers. */}}
{{- define "fer.containerSecurityContext" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: [ALL]
{{- end -}}

{{/* Scrape hints for a plain Prometheus with kubernetes_sd (monitoring/prometheus.yml). */}}
{{- define "fer.scrapeAnnotations" -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ . | quote }}
prometheus.io/path: /metrics
{{- end -}}

{{/* Environment every service gets. Call with (dict "root" $ "prefix" "AUTH"). */}}
{{- define "fer.commonEnv" -}}
- name: {{ .prefix }}_HOST
  value: "0.0.0.0"
- name: {{ .prefix }}_LOG_LEVEL
  value: {{ .root.Values.logLevel | quote }}
- name: {{ .prefix }}_LOG_FILE
  value: {{ .root.Values.logFile | quote }}
{{- end -}}

{{- define "fer.amqpEnv" -}}
- name: AMQP_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "fer.amqpSecret" . }}
      key: url
{{- end -}}

{{/* The env a database-backed service needs: its URL from a Secret. */}}
{{- define "fer.authEnv" -}}
{{ include "fer.commonEnv" (dict "root" . "prefix" "AUTH") }}
- name: AUTH_GRPC_PORT
  value: {{ .Values.auth.grpcPort | quote }}
- name: AUTH_METRICS_PORT
  value: {{ .Values.auth.metricsPort | quote }}
- name: AUTH_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "fer.authDbSecret" . }}
      key: url
- name: AUTH_JWT_PRIVATE_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "fer.jwtSecret" . }}
      key: private-key.pem
{{- if include "fer.adminEnabled" . }}
- name: AUTH_ADMIN_EMAIL
  valueFrom:
    secretKeyRef:
      name: {{ include "fer.adminSecret" . }}
      key: email
- name: AUTH_ADMIN_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "fer.adminSecret" . }}
      key: password
{{- end }}
{{- with .Values.auth.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "fer.reportsEnv" -}}
{{ include "fer.commonEnv" (dict "root" . "prefix" "REPORTS") }}
- name: REPORTS_GRPC_PORT
  value: {{ .Values.reports.grpcPort | quote }}
- name: REPORTS_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "fer.reportsDbSecret" . }}
      key: url
- name: REPORTS_METRICS_PORT
  value: {{ .Values.reports.metricsPort | quote }}
- name: REPORTS_WORKER_METRICS_PORT
  value: {{ .Values.reports.worker.metricsPort | quote }}
{{- /* AnalyzeImage: the inference service classifies an upload, the auth service counts it. */}}
- name: REPORTS_INFERENCE_ADDR
  value: "{{ if .Values.inference.enabled }}{{ include "fer.fullname" . }}-inference:{{ .Values.inference.grpcPort }}{{ end }}"
- name: REPORTS_AUTH_ADDR
  value: "{{ include "fer.fullname" . }}-auth:{{ .Values.auth.grpcPort }}"
{{ include "fer.amqpEnv" . }}
{{- with .Values.reports.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* An Ingress spec routing one path prefix of the gateway's host. Call with (dict "root" $ "path" "/"). */}}
{{- define "fer.gatewayIngressSpec" -}}
{{- $ing := .root.Values.gateway.ingress -}}
{{- with $ing.className }}
ingressClassName: {{ . }}
{{- end }}
{{- if $ing.tlsSecretName }}
tls:
  - hosts: [{{ $ing.host | quote }}]
    secretName: {{ $ing.tlsSecretName }}
{{- end }}
rules:
  - host: {{ $ing.host | quote }}
    http:
      paths:
        - path: {{ .path }}
          pathType: Prefix
          backend:
            service:
              name: {{ include "fer.fullname" .root }}-gateway
              port:
                name: http
{{- end -}}
