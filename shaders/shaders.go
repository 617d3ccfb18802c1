// Package shaders holds every WGSL compute shader of the engine, one file per
// op and direction. Each file opens with a header comment giving its
// bindings, the shapes it expects and its dispatch formula. Binding 0 of
// group 0 is always the uniform parameter block; storage buffers follow in
// the order the Go op passes them.
package shaders

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"
)

//go:embed *.wgsl
var files embed.FS

// Source returns the text of a shader file, e.g. "unary_fwd.wgsl", with
// its includes expanded: a line `//#include "lib.wgsl"` is replaced by that
// file's text (once per shader; libraries hold helper functions and no entry
// point, and their names end in _lib.wgsl).
func Source(name string) (string, error) {
	return expand(name, map[string]bool{})
}

func expand(name string, seen map[string]bool) (string, error) {
	b, err := files.ReadFile(name)
	if err != nil {
		return "", fmt.Errorf("shaders: no shader %q", name)
	}
	seen[name] = true
	var out strings.Builder
	for _, line := range strings.SplitAfter(string(b), "\n") {
		t := strings.TrimSpace(line)
		if inc, ok := strings.CutPrefix(t, "//#include "); ok {
			inc = strings.Trim(strings.TrimSpace(inc), `"`)
			if seen[inc] {
				continue
			}
			src, err := expand(inc, seen)
			if err != nil {
				return "", fmt.Errorf("shaders: %s includes %w", name, err)
			}
			out.WriteString(src)
			out.WriteString("\n")
			continue
		}
		out.WriteString(line)
	}
	return out.String(), nil
}

// IsLibrary reports whether name is an include-only helper file.
func IsLibrary(name string) bool { return strings.HasSuffix(name, "_lib.wgsl") }

// Names lists every shader file.
func Names() []string {
	ents, _ := fs.ReadDir(files, ".")
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".wgsl") {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}
