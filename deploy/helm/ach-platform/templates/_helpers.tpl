{{- define "ach.fullname" -}}{{ .Release.Name }}{{- end -}}

{{- define "ach.labels" -}}
app.kubernetes.io/part-of: ach-platform
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{/* A service's image: services.<name>.image when set (skaffold sets it), else registry/ach-<name>:tag. */}}
{{- define "ach.image" -}}
{{- $root := index . 0 -}}{{- $name := index . 1 -}}
{{- $svc := index $root.Values.services $name -}}
{{- if $svc.image -}}{{ $svc.image }}
{{- else -}}
{{- if $root.Values.image.registry -}}{{ $root.Values.image.registry }}/{{- end -}}ach-{{ $name }}:{{ $root.Values.image.tag }}
{{- end -}}
{{- end -}}

{{/* A service's own variables: its ports, its database (from the Secret, unless embedded), its
Kafka principal, and the env of its values entry (values templated). list: root, name, entry. */}}
{{- define "ach.env" -}}
{{- $root := index . 0 -}}{{- $name := index . 1 -}}{{- $svc := index . 2 -}}
- name: GRPC_PORT
  value: {{ $svc.grpcPort | quote }}
- name: METRICS_PORT
  value: {{ $svc.metricsPort | quote }}
- name: TOKEN_PORT
  value: {{ add $svc.grpcPort $root.Values.auth.tokenPortOffset | quote }}
- name: HEALTH_PORT
  value: {{ add $svc.grpcPort $root.Values.auth.healthPortOffset | quote }}
- name: HTTP_PORT
  value: {{ $svc.httpPort | default 0 | quote }}
{{- with $root.Values.leaderElection }}
{{- if .enabled }}
- name: ACH_LEADER_ELECTION
  value: kubernetes
- name: ACH_LEASE_NAME
  value: {{ include "ach.fullname" $root }}-{{ $name }}
- name: ACH_LEASE_DURATION_S
  value: {{ .leaseDurationSeconds | quote }}
- name: ACH_LEASE_RENEW_DEADLINE_S
  value: {{ .renewDeadlineSeconds | quote }}
- name: ACH_LEASE_RETRY_S
  value: {{ .retryPeriodSeconds | quote }}
- name: POD_NAME
  valueFrom: {fieldRef: {fieldPath: metadata.name}}
- name: POD_NAMESPACE
  valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
{{- end }}
{{- end }}
{{- include "ach.databaseEnv" (list $root $name) }}
{{- if hasPrefix "SASL_" $root.Values.kafka.securityProtocol }}
- name: KAFKA_SASL_USERNAME
  value: ach-{{ $name }}
- name: KAFKA_SASL_PASSWORD_FILE
  value: /etc/ach/kafka/password
{{- end }}
{{- range $svc.env }}
- name: {{ .name }}
  {{- if hasKey . "valueFrom" }}
  valueFrom:
    {{- toYaml .valueFrom | nindent 4 }}
  {{- else }}
  value: {{ tpl (toString .value) $root | quote }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* DATABASE_URL from the Secret (nothing when the database is embedded: SQLite in the pod). */}}
{{- define "ach.databaseEnv" -}}
{{- $root := index . 0 -}}{{- $name := index . 1 -}}
{{- if not $root.Values.database.embedded }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.database.existingSecret }}
      key: {{ $name }}-database-url
{{- end }}
{{- end -}}

{{- define "ach.securityContext" -}}
runAsNonRoot: true
runAsUser: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* A service's replicas: its own entry's, else defaults.replicas. list: root, entry. */}}
{{- define "ach.replicas" -}}
{{- $root := index . 0 -}}{{- $svc := index . 1 -}}
{{- ternary $svc.replicas $root.Values.defaults.replicas (hasKey $svc "replicas") -}}
{{- end -}}

{{/* Where the services send traces: telemetry.otlpEndpoint, else the release's collector when on. */}}
{{- define "ach.otlpEndpoint" -}}
{{- if .Values.telemetry.otlpEndpoint -}}{{ .Values.telemetry.otlpEndpoint }}
{{- else if .Values.telemetry.collector.enabled -}}http://{{ include "ach.fullname" . }}-otel-collector:4317
{{- end -}}
{{- end -}}
