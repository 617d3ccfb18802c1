package gpu

import "fmt"

// Group normalisation (PyTorch nn.GroupNorm) for x [N, C, ...spatial].
// Forward: shaders/groupnorm_fwd_stats.wgsl (per-channel mean and M2),
// groupnorm_fwd_combine.wgsl (per-group mean and rstd, saved for the
// backward), groupnorm_fwd.wgsl (elementwise normalise and affine).
// Backward: groupnorm_bwd_reduce.wgsl (per-channel sums of g and g*xhat),
// groupnorm_bwd_combine.wgsl (dweight, dbias, per-group sums),
// groupnorm_bwd.wgsl (elementwise dx).
// Reference: ref.GroupNorm / ref.GroupNormBackward.
//
// Statistics are reduced per (n, c) row first, one workgroup each, then
// merged per group, so a group of 40 channels x 64x64 spreads over 40
// workgroups, and a group of two single values is still exact (the merge
// is Chan's parallel variance, not a difference of squares).

// GroupNorm normalises x [N, C, ...spatial] over groups of C/groups
// consecutive channels and all spatial positions, then applies weight and
// bias [C] (either may be nil) per channel. groups must divide C. The
// forward saves mean and rstd per (n, group), freed with the tape; the
// backward gives dx, dweight and dbias.
func (e *Engine) GroupNorm(x, weight, bias *Tensor, groups int, eps float32) *Tensor {
	if len(x.shape) < 2 {
		panic(fmt.Sprintf("gpu: GroupNorm needs x of shape [N, C, ...], got %v", x.shape))
	}
	N, C := x.shape[0], x.shape[1]
	if groups <= 0 || C%groups != 0 {
		panic(fmt.Sprintf("gpu: GroupNorm: %d groups do not divide %d channels", groups, C))
	}
	for _, t := range []*Tensor{weight, bias} {
		if t != nil && (len(t.shape) != 1 || t.shape[0] != C) {
			panic(fmt.Sprintf("gpu: GroupNorm of %v needs weight and bias of shape [%d], got %v", x.shape, C, t.shape))
		}
	}
	y := e.alloc(x.shape...) // [N, C, ...spatial]
	if x.n == 0 {
		return y
	}
	S := x.n / (N * C) // spatial positions per channel
	cg := C / groups
	rows := N * C

	st := e.alloc(rows, 2) // [N*C, 2] per-channel (mean, M2)
	ks := Kernel{File: "groupnorm_fwd_stats.wgsl", Entry: rowEntry(S)}
	e.rowChunks(rows, []int{S}, 0, func(r0, nr int) {
		e.Dispatch(ks, Params{nr, S, r0}, e.rowGrid(nr), x.window(r0*S, nr*S), st.bind())
	})
	mean, rstd := e.alloc(N*groups), e.alloc(N*groups) // [N*G] each
	e.Dispatch(Kernel{File: "groupnorm_fwd_combine.wgsl", Entry: "main"}, Params{N * groups, cg, S, eps},
		e.Grid1D(N*groups, 64), st.bind(), mean.bind(), rstd.bind())
	st.Release()

	flags := 0
	if weight != nil {
		flags |= 1
	}
	if bias != nil {
		flags |= 2
	}
	e.chunks(x.n, func(from, count int) {
		e.Dispatch(Kernel{File: "groupnorm_fwd.wgsl", Entry: "main"}, Params{count, from, S, C, cg, flags},
			e.Grid1D(count, 256), x.window(from, count), orDummy(weight, x), orDummy(bias, x),
			mean.bind(), rstd.bind(), y.window(from, count))
	})

	e.record(y, []*Tensor{x, weight, bias, mean, rstd}, func(g *Tensor) {
		e.groupNormBackward(g, x, weight, bias, mean, rstd, groups)
	})
	e.keepForBackward(y, mean, rstd)
	return y
}

// groupNormBackward accumulates dx, dweight and dbias of GroupNorm into
// those inputs that require them.
func (e *Engine) groupNormBackward(g, x, weight, bias, mean, rstd *Tensor, groups int) {
	N, C := x.shape[0], x.shape[1]
	S := x.n / (N * C)
	cg := C / groups
	rows := N * C

	ab := e.alloc(rows, 2) // [N*C, 2] per-channel (sum g, sum g*xhat)
	kr := Kernel{File: "groupnorm_bwd_reduce.wgsl", Entry: rowEntry(S)}
	e.rowChunks(rows, []int{S}, 0, func(r0, nr int) {
		e.Dispatch(kr, Params{nr, S, cg, r0}, e.rowGrid(nr),
			g.window(r0*S, nr*S), x.window(r0*S, nr*S), mean.bind(), rstd.bind(), ab.bind())
	})
	flags := 0
	if weight != nil {
		flags = 1
	}
	dw, db := e.alloc(C), e.alloc(C) // [C] each
	s := e.alloc(N*groups, 2)        // [N*G, 2] group sums of w*g, w*g*xhat
	e.Dispatch(Kernel{File: "groupnorm_bwd_combine.wgsl", Entry: "main"}, Params{N, C, cg, flags},
		e.Grid1D(C+N*groups, 64), ab.bind(), orDummy(weight, ab), dw.bind(), db.bind(), s.bind())
	ab.Release()

	if x.requiresGrad {
		dx := e.alloc(x.shape...)
		e.chunks(x.n, func(from, count int) {
			e.Dispatch(Kernel{File: "groupnorm_bwd.wgsl", Entry: "main"}, Params{count, from, S, C, cg, flags},
				e.Grid1D(count, 256), g.window(from, count), x.window(from, count), orDummy(weight, x),
				mean.bind(), rstd.bind(), s.bind(), dx.window(from, count))
		})
		x.accumulate(dx)
	}
	s.Release()
	if weight != nil && weight.requiresGrad {
		weight.accumulate(dw)
	} else {
		dw.Release()
	}
	if bias != nil && bias.requiresGrad {
		bias.accumulate(db)
	} else {
		db.Release()
	}
}
