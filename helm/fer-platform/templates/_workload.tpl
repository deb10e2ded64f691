{{/*
A Deployment for one of the platform's Python services.
Call with (dict "root" $ "component" NAME "values" VALUES "args" LIST "env" YAML
  "grpcPort" INT(0 = no gRPC server) "metricsPort" INT "replicas" INT "autoscaled" BOOL
  "serviceAccount" NAME "automountToken" BOOL "initContainers" YAML "volumes" YAML "volumeMounts" YAML)
*/}}
{{- define "fer.serviceDeployment" -}}
{{- $root := .root -}}
{{- $c := .values -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "fer.fullname" $root }}-{{ .component }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "fer.labels" (dict "root" $root "component" .component) | nindent 4 }}
spec:
  {{- if not .autoscaled }}
  replicas: {{ .replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxUnavailable: 0, maxSurge: 1}
  selector:
    matchLabels:
      {{- include "fer.selectorLabels" (dict "root" $root "component" .component) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "fer.labels" (dict "root" $root "component" .component) | nindent 8 }}
      annotations:
        {{- include "fer.scrapeAnnotations" .metricsPort | nindent 8 }}
    spec:
      serviceAccountName: {{ .serviceAccount }}
      automountServiceAccountToken: {{ .automountToken }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: 30
      {{- with .initContainers }}
      initContainers:
        {{- . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ include "fer.image" (dict "root" $root "image" $c.image) }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args: {{ toJson .args }}
          ports:
            {{- if .grpcPort }}
            - name: grpc
              containerPort: {{ .grpcPort }}
            {{- end }}
            - name: metrics
              containerPort: {{ .metricsPort }}
          env:
            {{- .env | nindent 12 }}
          {{- if .grpcPort }}
          # grpc.health.v1 is registered by every gRPC server.
          startupProbe:
            grpc: {port: {{ .grpcPort }}}
            periodSeconds: 2
            failureThreshold: 60
          livenessProbe:
            grpc: {port: {{ .grpcPort }}}
            periodSeconds: 10
            timeoutSeconds: 3
            failureThreshold: 3
          readinessProbe:
            grpc: {port: {{ .grpcPort }}}
            periodSeconds: 5
            timeoutSeconds: 3
            failureThreshold: 2
          {{- else }}
          # A queue consumer has no RPC port: its metrics endpoint answering means the process is alive.
          livenessProbe:
            httpGet: {path: /metrics, port: metrics}
            initialDelaySeconds: 10
            periodSeconds: 15
            timeoutSeconds: 3
            failureThreshold: 4
          {{- end }}
          resources:
            {{- toYaml .resources | nindent 12 }}
          {{- include "fer.containerSecurityContext" $root | nindent 10 }}
          volumeMounts:
            - {name: tmp, mountPath: /tmp}
            {{- with .volumeMounts }}
            {{- . | nindent 12 }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir: {}
        {{- with .volumes }}
        {{- . | nindent 8 }}
        {{- end }}
      {{- with $c.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "fer.selectorLabels" (dict "root" $root "component" .component) | nindent 14 }}
{{- end -}}

{{/* ClusterIP Service with the gRPC and metrics ports. Call with (dict "root" $ "component" NAME "grpcPort" INT "metricsPort" INT). */}}
{{- define "fer.grpcServiceObject" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "fer.fullname" .root }}-{{ .component }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "fer.labels" (dict "root" .root "component" .component) | nindent 4 }}
spec:
  # Headless: the name resolves to every ready pod, and the callers' gRPC channels balance over them
  # (ferkit/grpc_client.py, round_robin). A ClusterIP would hand each long-lived channel one pod.
  clusterIP: None
  selector:
    {{- include "fer.selectorLabels" (dict "root" .root "component" .component) | nindent 4 }}
  ports:
    - name: grpc
      port: {{ .grpcPort }}
      targetPort: grpc
      appProtocol: grpc
    - name: metrics
      port: {{ .metricsPort }}
      targetPort: metrics
{{- end -}}

{{/* Call with (dict "root" $ "component" NAME "autoscaling" VALUES). */}}
{{- define "fer.hpa" -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "fer.fullname" .root }}-{{ .component }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "fer.labels" (dict "root" .root "component" .component) | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "fer.fullname" .root }}-{{ .component }}
  minReplicas: {{ .autoscaling.minReplicas }}
  maxReplicas: {{ .autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ .autoscaling.targetCPUUtilizationPercentage }}
{{- end -}}

{{/* Call with (dict "root" $ "component" NAME "pdb" VALUES). */}}
{{- define "fer.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "fer.fullname" .root }}-{{ .component }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "fer.labels" (dict "root" .root "component" .component) | nindent 4 }}
spec:
  maxUnavailable: {{ .pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "fer.selectorLabels" (dict "root" .root "component" .component) | nindent 6 }}
{{- end -}}

{{/* Call with (dict "root" $ "component" NAME). */}}
{{- define "fer.serviceAccount" -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "fer.fullname" .root }}-{{ .component }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "fer.labels" (dict "root" .root "component" .component) | nindent 4 }}
automountServiceAccountToken: false
{{- end -}}

{{/* Init container applying Alembic migrations. Call with (dict "root" $ "image" VALUES "module" "services.auth.cli" "env" YAML "resources" VALUES). */}}
{{- define "fer.migrateInitContainer" -}}
- name: migrate
  image: {{ include "fer.image" (dict "root" .root "image" .image) }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  args: ["python", "-m", {{ .module | quote }}, "migrate"]
  env:
    {{- .env | nindent 4 }}
  resources:
    {{- toYaml .resources | nindent 4 }}
  {{- include "fer.containerSecurityContext" .root | nindent 2 }}
  volumeMounts:
    - {name: tmp, mountPath: /tmp}
{{- end -}}
