{{/* Names and labels shared by every template. */}}

{{- define "clusterpedia.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "clusterpedia.fullname" -}}
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

{{- define "clusterpedia.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "clusterpedia.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* selectorLabels: call with (dict "ctx" $ "component" "apiserver") */}}
{{- define "clusterpedia.selectorLabels" -}}
app.kubernetes.io/name: {{ include "clusterpedia.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "clusterpedia.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "clusterpedia.serviceAccountName" -}}
{{- printf "%s-%s" (include "clusterpedia.fullname" .ctx) .component -}}
{{- end -}}

{{- define "clusterpedia.apiserverService" -}}
{{- printf "%s-apiserver" (include "clusterpedia.fullname" .) -}}
{{- end -}}

{{- define "clusterpedia.certSecret" -}}
{{- if .Values.certificates.generate -}}
{{- printf "%s-apiserver-certs" (include "clusterpedia.fullname" .) -}}
{{- else -}}
{{- required "certificates.existingSecret is required when certificates.generate is false" .Values.certificates.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the storage and queue URLs the chart builds (bundled or given). */}}
{{- define "clusterpedia.connectionsSecret" -}}
{{- printf "%s-connections" (include "clusterpedia.fullname" .) -}}
{{- end -}}

{{- define "clusterpedia.bundledStorage" -}}
{{- if and (not .Values.storage.url) (not .Values.storage.existingSecret) -}}true{{- end -}}
{{- end -}}

{{- define "clusterpedia.bundledQueue" -}}
{{- if and (not .Values.queue.url) (not .Values.queue.existingSecret) -}}true{{- end -}}
{{- end -}}

{{- define "clusterpedia.storageUrl" -}}
{{- if .Values.storage.url -}}
{{- .Values.storage.url -}}
{{- else -}}
{{- $b := .Values.storage.bundled -}}
{{- $pw := $b.password | urlquery -}}
{{- if eq .Values.storage.type "postgres" -}}
{{- printf "postgresql://%s:%s@%s-postgres:5432/%s" $b.user $pw (include "clusterpedia.fullname" .) $b.database -}}
{{- else if eq .Values.storage.type "mysql" -}}
{{- printf "mysql://%s:%s@%s-mariadb:3306/%s" $b.user $pw (include "clusterpedia.fullname" .) $b.database -}}
{{- else -}}
{{- fail (printf "storage.type must be postgres or mysql, not %q" .Values.storage.type) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "clusterpedia.queueUrl" -}}
{{- default (printf "redis://%s-redis:6379/0" (include "clusterpedia.fullname" .)) .Values.queue.url -}}
{{- end -}}

{{/* Environment shared by every tier: the connection URLs from Secrets. */}}
{{- define "clusterpedia.connectionEnv" -}}
- name: CLUSTERPEDIA_STORAGE
  valueFrom:
    secretKeyRef:
      {{- if .Values.storage.existingSecret }}
      name: {{ .Values.storage.existingSecret }}
      key: {{ .Values.storage.existingSecretKey }}
      {{- else }}
      name: {{ include "clusterpedia.connectionsSecret" . }}
      key: storage
      {{- end }}
- name: CLUSTERPEDIA_QUEUE
  valueFrom:
    secretKeyRef:
      {{- if .Values.queue.existingSecret }}
      name: {{ .Values.queue.existingSecret }}
      key: {{ .Values.queue.existingSecretKey }}
      {{- else }}
      name: {{ include "clusterpedia.connectionsSecret" . }}
      key: queue
      {{- end }}
{{- end -}}

{{/* Pod-level settings every tier shares; call with (dict "ctx" $ "tier" .Values.writer). */}}
{{- define "clusterpedia.podExtras" -}}
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tier.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tier.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tier.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{- define "clusterpedia.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: ["ALL"]
{{- end -}}
