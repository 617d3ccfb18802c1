package gpu

import (
	"bytes"
	"strings"
	"testing"
)

// TestSelfCheck runs the self-check command's op suite and expects every
// line to pass and the adapter to be named.
func TestSelfCheck(t *testing.T) {
	e := engine(t)
	_, seed := seeded(t)
	var out bytes.Buffer
	if err := SelfCheck(e, &out, seed); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	s := out.String()
	if !strings.Contains(s, "adapter: "+e.Info.Name) || strings.Contains(s, "FAIL") || !strings.Contains(s, "self-check passed") {
		t.Errorf("unexpected self-check output:\n%s", s)
	}
	if n := strings.Count(s, "] ok "); n != len(selfCases()) || n < 20 {
		t.Errorf("%d ops passed of %d", n, len(selfCases()))
	}
}
