{{/*
The config.pbtxt Triton serves in this release, rendered from triton.model and triton.gpu (KIND_GPU or
KIND_CPU). The seed init container writes it over the one shipped in the model repository (which the
exporter, ferkit.modelrepo, writes for GPU nodes); the inference service sends it with every load.
*/}}
{{- define "fer.tritonModelConfig" -}}
{{- $c := .Values.triton -}}
{{- $m := $c.model -}}
name: "{{ .Values.inference.modelName }}"
platform: "{{ $m.platform }}"
max_batch_size: {{ $m.maxBatchSize }}
input [
  {
    name: "{{ $m.inputName }}"
    data_type: TYPE_FP32
    dims: [ {{ join ", " $m.inputDims }} ]
  }
]
output [
  {
    name: "{{ $m.outputName }}"
    data_type: TYPE_FP32
    dims: [ {{ $m.numClasses }} ]
  }
]
dynamic_batching {
  preferred_batch_size: [ {{ join ", " $m.dynamicBatching.preferredBatchSizes }} ]
  max_queue_delay_microseconds: {{ $m.dynamicBatching.maxQueueDelayMicroseconds }}
}
instance_group [
  {
    count: {{ $m.instanceCount }}
    kind: {{ if $c.gpu.enabled }}KIND_GPU{{ else }}KIND_CPU{{ end }}
  }
]
version_policy: { latest { num_versions: {{ $m.numVersions }} } }
parameters: { key: "INFERENCE_MODE" value: { string_value: "true" } }
{{- end -}}
