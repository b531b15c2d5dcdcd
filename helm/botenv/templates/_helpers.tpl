{{/*
Names. The prefix of every object is the "fullname": the release name, or
release-chart when the release name does not contain the chart name.
*/}}
{{- define "botenv.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "botenv.fullname" -}}
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

{{- define "botenv.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object names of the two components (suffixes fit in 63 characters with a 49-char prefix). */}}
{{- define "botenv.operator.fullname" -}}
{{- printf "%s-operator" (include "botenv.fullname" . | trunc 49 | trimSuffix "-") }}
{{- end }}

{{- define "botenv.modelServer.fullname" -}}
{{- printf "%s-model-server" (include "botenv.fullname" . | trunc 49 | trimSuffix "-") }}
{{- end }}

{{- define "botenv.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "botenv.operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "botenv.modelServer.serviceAccountName" -}}
{{- if .Values.modelServer.serviceAccount.create }}
{{- default (include "botenv.modelServer.fullname" .) .Values.modelServer.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.modelServer.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Lease the operator replicas elect their leader with (fixed name in the operator). */}}
{{- define "botenv.leaseName" -}}
botenv-operator
{{- end }}

{{/* The model server's in-cluster URL, which the operator writes into endpoints.yml. */}}
{{- define "botenv.modelServer.url" -}}
{{- printf "http://%s.%s.svc:%d" (include "botenv.modelServer.fullname" .) .Release.Namespace (int .Values.modelServer.service.port) }}
{{- end }}

{{/* Labels. */}}
{{- define "botenv.labels" -}}
helm.sh/chart: {{ include "botenv.chart" . }}
app.kubernetes.io/name: {{ include "botenv.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: botenv
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels of one component: pass (dict "ctx" $ "component" "operator"). */}}
{{- define "botenv.selectorLabels" -}}
app.kubernetes.io/name: {{ include "botenv.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "botenv.componentLabels" -}}
{{ include "botenv.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "botenv.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
Watch scope: true when botenv serves every namespace (cluster-wide RBAC), false when
watch.namespaces lists them (a Role + RoleBinding in each).
*/}}
{{- define "botenv.clusterwide" -}}
{{- if empty .Values.watch.namespaces }}true{{ end }}
{{- end }}

{{/*
A ClusterRole's or Role's binding. Pass (dict "ctx" $ "kind" "ClusterRoleBinding"|"RoleBinding"
"name" NAME "namespace" NS "roleKind" "ClusterRole"|"Role" "role" ROLE "sa" SA "component" C).
*/}}
{{- define "botenv.binding" -}}
apiVersion: rbac.authorization.k8s.io/v1
kind: {{ .kind }}
metadata:
  name: {{ .name }}
  {{- if .namespace }}
  namespace: {{ .namespace }}
  {{- end }}
  labels:
    {{- include "botenv.componentLabels" (dict "ctx" .ctx "component" .component) | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: {{ .roleKind }}
  name: {{ .role }}
subjects:
  - kind: ServiceAccount
    name: {{ .sa }}
    namespace: {{ .ctx.Release.Namespace }}
{{- end }}

{{/* The pod-level securityContext, volumes for /tmp, and shared scheduling fields. */}}
{{- define "botenv.podCommon" -}}
automountServiceAccountToken: true
securityContext:
  {{- toYaml .ctx.Values.podSecurityContext | nindent 2 }}
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The storage policy (values "storage"), as BOTENV_STORAGE_* variables: the operator and the
model server both enforce it, so both get the same.
*/}}
{{- define "botenv.storageEnv" -}}
{{- with .Values.storage.localRoots }}
- name: BOTENV_STORAGE_LOCAL_ROOTS
  value: {{ join "," . | quote }}
{{- end }}
{{- with .Values.storage.urlPrefixes }}
- name: BOTENV_STORAGE_URL_PREFIXES
  value: {{ join "," . | quote }}
{{- end }}
{{- with .Values.storage.allowedNetworks }}
- name: BOTENV_STORAGE_ALLOWED_NETWORKS
  value: {{ join "," . | quote }}
{{- end }}
{{- end }}
