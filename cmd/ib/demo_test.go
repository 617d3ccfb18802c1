package main

import (
	"strings"
	"testing"
)

func TestDemo_usageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"demo", "--quick", "--full"}, "exclude each other"},
		{[]string{"demo", "--measure-reward", "64"}, "--measure-reward needs --at"},
		{[]string{"demo", "--epochs", "x"}, "invalid value"},
	} {
		code, _, stderr := ib(t, c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q (want 2 and %q)", c.args, code, stderr, c.want)
		}
	}
}
