{{/* The chart's name, or nameOverride. */}}
{{- define "together-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: fullnameOverride, else release name (plus chart name if absent). */}}
{{- define "together-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "together-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "together-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "together-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "together-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: together-operator
{{- end }}

{{- define "together-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "together-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator's permissions: exactly what it uses (tests/deploy/test_rbac.py checks). */}}
{{- define "together-operator.rules" -}}
# Watch GPUClusters; patch adds and removes the finalizer.
- apiGroups: ["compute.together.ai"]
  resources: ["gpuclusters"]
  verbs: ["list", "watch", "patch"]
# Status holds Together's view and the operator's records (cluster ID, create intent).
- apiGroups: ["compute.together.ai"]
  resources: ["gpuclusters/status"]
  verbs: ["patch"]
# The kubeconfig Secret is owned by its GPUCluster with blockOwnerDeletion, which needs
# this where OwnerReferencesPermissionEnforcement is on (OpenShift, say).
- apiGroups: ["compute.together.ai"]
  resources: ["gpuclusters/finalizers"]
  verbs: ["update"]
# Read credentialsSecretRef Secrets and guard them (a finalizer while in use); write and
# remove the kubeconfig Secrets; watch both (a label selector: no other Secret is sent).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "update", "delete"]
# kopf reports handler progress and the operator its decisions as Events.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}
