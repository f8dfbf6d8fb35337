{{/* Names and labels shared by the templates. */}}

{{- define "sandbox.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sandbox.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The control plane pods; the sandbox NetworkPolicy admits exactly these. */}}
{{- define "sandbox.controlPlaneSelector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: control-plane
{{- end -}}

{{/* The egress proxy pods; sandbox pods may reach exactly these (with egressProxy.enabled). */}}
{{- define "sandbox.egressProxySelector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: egress-proxy
{{- end -}}

{{- define "sandbox.egressProxyName" -}}
{{- printf "%s-egress" (include "sandbox.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Where both Deployments mount the egress key. */}}
{{- define "sandbox.egressKeyDir" -}}
/etc/sandbox/egress
{{- end -}}

{{- define "sandbox.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "sandbox.fullname" .)) -}}
{{- end -}}

{{- define "sandbox.serviceAccountName" -}}
{{- include "sandbox.fullname" . -}}
{{- end -}}

{{/*
A secret value: the configured one, else the one stored by an earlier install (so upgrades keep
it), else a new random one. Call with (dict "ctx" $ "key" "api-key" "value" .Values.x "length" 32).
*/}}
{{- define "sandbox.secretValue" -}}
{{- if .value -}}
{{- .value -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace (include "sandbox.secretName" .ctx) -}}
{{- if and $existing $existing.data (hasKey $existing.data .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum (int .length) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "sandbox.s3Endpoint" -}}
{{- if .Values.s3.endpoint -}}
{{- .Values.s3.endpoint -}}
{{- else if .Values.minio.enabled -}}
{{- printf "http://%s-minio:9000" (include "sandbox.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* A TOML array of strings. */}}
{{- define "sandbox.tomlStrings" -}}
[{{ range $i, $s := . }}{{ if $i }}, {{ end }}{{ include "sandbox.tomlString" $s }}{{ end }}]
{{- end -}}

{{/* A TOML string (JSON string escapes are valid TOML). */}}
{{- define "sandbox.tomlString" -}}
{{- . | toString | toJson -}}
{{- end -}}
