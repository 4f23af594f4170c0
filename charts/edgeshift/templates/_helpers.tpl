{{/* Chart name, at most 63 characters (a label value). */}}
{{- define "edgeshift.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The name of every object: the release name when it already contains the chart name
(`helm install edgeshift ...` gives `edgeshift`), else `<release>-<chart>`. Cluster-scoped
objects use it too, so two releases never share a ClusterRole.
*/}}
{{- define "edgeshift.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "edgeshift.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "edgeshift.labels" -}}
helm.sh/chart: {{ include "edgeshift.chart" . }}
{{ include "edgeshift.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: edgeshift
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the operator pods; never change them in an upgrade. */}}
{{- define "edgeshift.selectorLabels" -}}
app.kubernetes.io/name: {{ include "edgeshift.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "edgeshift.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "edgeshift.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Lease the replicas elect a leader on, in the release namespace. */}}
{{- define "edgeshift.leaseName" -}}
{{- printf "%s-leader" (include "edgeshift.fullname" .) }}
{{- end }}

{{/* The trust policy ConfigMap, in the release namespace (a fixed name the docs refer to). */}}
{{- define "edgeshift.trustPolicyName" -}}
edgeshift-trust-policy
{{- end }}

{{- define "edgeshift.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Settings that cannot be checked by the JSON schema alone. */}}
{{- define "edgeshift.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled=true: two operators without a leader would both write" }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (gt (int .Values.replicaCount) 1) (ge (int .Values.podDisruptionBudget.minAvailable) (int .Values.replicaCount)) }}
{{- fail "podDisruptionBudget.minAvailable must be below replicaCount, or no node could ever be drained" }}
{{- end }}
{{- end }}
