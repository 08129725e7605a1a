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

{{/* Settings every service reads; the database URL comes from the Secret. */}}
{{- define "ach.env" -}}
{{- $root := index . 0 -}}{{- $name := index . 1 -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.database.existingSecret }}
      key: {{ $name }}-database-url
{{- end -}}

{{- define "ach.securityContext" -}}
runAsNonRoot: true
runAsUser: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}
