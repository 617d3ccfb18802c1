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

// Source returns the text of a shader file, e.g. "unary.wgsl".
func Source(name string) (string, error) {
	b, err := files.ReadFile(name)
	if err != nil {
		return "", fmt.Errorf("shaders: no shader %q", name)
	}
	return string(b), nil
}

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
