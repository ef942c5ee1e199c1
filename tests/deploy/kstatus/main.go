// Command kstatus reads Kubernetes objects as JSON (one per line) on stdin and prints, for
// each, the result of kstatus's status.Compute as one JSON line: the same library Flux's
// kustomize-controller and helm-controller use to judge health.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Status     string   `json:"status"`
	Message    string   `json:"message"`
	Conditions []string `json:"conditions"`
	Error      string   `json:"error,omitempty"`
}

func main() {
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1024*1024), 16*1024*1024)
	out := json.NewEncoder(os.Stdout)
	for scanner.Scan() {
		// Unstructured's own decoder keeps integers int64, as kstatus expects.
		object := &unstructured.Unstructured{}
		if err := object.UnmarshalJSON(scanner.Bytes()); err != nil {
			fmt.Fprintf(os.Stderr, "kstatus: input is not a Kubernetes object: %v\n", err)
			os.Exit(2)
		}
		result := verdict{Conditions: []string{}}
		computed, err := status.Compute(object)
		if err != nil {
			result.Error = err.Error()
		} else {
			result.Status = computed.Status.String()
			result.Message = computed.Message
			for _, condition := range computed.Conditions {
				result.Conditions = append(result.Conditions, fmt.Sprintf("%s=%s", condition.Type, condition.Status))
			}
		}
		if err := out.Encode(result); err != nil {
			fmt.Fprintf(os.Stderr, "kstatus: %v\n", err)
			os.Exit(2)
		}
	}
	if err := scanner.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "kstatus: reading stdin: %v\n", err)
		os.Exit(2)
	}
}
