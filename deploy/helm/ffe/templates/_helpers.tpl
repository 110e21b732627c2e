{{/*
The release's full name: the release name when it already contains the chart's name
(`helm install ffe ...` gives ffe-api, ffe-worker, ...), else release-chart.
*/}}
{{- define "ffe.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ffe.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ffe
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "api"). */}}
{{- define "ffe.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "ffe.componentLabels" -}}
{{ include "ffe.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "ffe.serviceAccountName" -}}
{{- default (include "ffe.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* The ffe image: repository@digest when a digest is set, else repository:tag. */}}
{{- define "ffe.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The worker runs the Ray image when the jobs go to the RayCluster (the driver needs Ray). */}}
{{- define "ffe.rayImage" -}}
{{- printf "%s:%s" .Values.ray.image.repository (default .Chart.AppVersion .Values.ray.image.tag) -}}
{{- end -}}

{{- define "ffe.rayClusterName" -}}
{{- printf "%s-ray" (include "ffe.fullname" .) -}}
{{- end -}}

{{/* The settings and credentials every ffe process reads. */}}
{{- define "ffe.env" -}}
- name: FFE__API__ENVIRONMENT
  value: {{ .Values.environment | quote }}
- name: FFE__DATA__DIR
  value: /data
- name: FFE__LOGGING__JSON
  value: "true"
- name: FFE__API__SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.existingSecret.name }}
      key: {{ .Values.existingSecret.keys.secretKey }}
- name: FFE__DATABASE__URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.existingSecret.name }}
      key: {{ .Values.existingSecret.keys.databaseUrl }}
- name: FFE__REDIS__URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.existingSecret.name }}
      key: {{ .Values.existingSecret.keys.redisUrl }}
{{- range $name, $value := .Values.extraEnv }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{- define "ffe.podSecurityContext" -}}
{{ toYaml .Values.podSecurityContext }}
{{- end -}}

{{- define "ffe.containerSecurityContext" -}}
{{ toYaml .Values.containerSecurityContext }}
{{- end -}}

{{/* /tmp as an emptyDir: the root filesystem is read-only. */}}
{{- define "ffe.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end -}}

{{/*
The probes of a process serving /health/live and /health/ready on the port named in .port:
the startup probe gives a slow start (migrations checked, caches warmed) 150 s before the
liveness probe may restart it.
*/}}
{{- define "ffe.probes" -}}
startupProbe:
  httpGet:
    path: /health/live
    port: {{ .port }}
  periodSeconds: 5
  failureThreshold: 30
  timeoutSeconds: 3
livenessProbe:
  httpGet:
    path: /health/live
    port: {{ .port }}
  periodSeconds: 15
  failureThreshold: 4
  timeoutSeconds: 5
readinessProbe:
  httpGet:
    path: /health/ready
    port: {{ .port }}
  periodSeconds: 10
  failureThreshold: 3
  timeoutSeconds: 5
{{- end -}}

{{/* A Ray process answers on its port (the head's GCS, a worker's raylet): Ray is alive. */}}
{{- define "ffe.rayProbes" -}}
livenessProbe:
  tcpSocket:
    port: {{ . }}
  initialDelaySeconds: 30
  periodSeconds: 15
  failureThreshold: 4
readinessProbe:
  tcpSocket:
    port: {{ . }}
  periodSeconds: 10
{{- end -}}
