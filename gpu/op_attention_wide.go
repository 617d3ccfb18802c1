package gpu

// attentionWide is attention for heads wider than the flash kernels'
// shared-memory tiles allow (D > maxHeadDim): the SD VAE's mid-block
// attention is one head of 512 channels. It is built from MatMul, Scale and
// Softmax over blocks of query rows, so at most [B, H, rows, Lk] scores
// (64 MiB by default) exist at once, and its gradient comes from those ops'
// backward passes. Non-causal only.
func (e *Engine) attentionWide(q, k, v *Tensor, scale float32) *Tensor {
	B, H, Lq := q.shape[0], q.shape[1], q.shape[2]
	Lk := k.shape[2]
	budget := wideScoreBudget / 4 // floats of scores per block
	rows := max(1, min(Lq, budget/max(1, B*H*Lk)))
	if rows >= Lq {
		return e.wideBlock(q, k, v, scale)
	}
	var sizes []int
	for r := 0; r < Lq; r += rows {
		sizes = append(sizes, min(rows, Lq-r))
	}
	qs := e.Split(q, 2, sizes...)
	outs := make([]*Tensor, len(qs))
	for i, qb := range qs {
		outs[i] = e.wideBlock(qb, k, v, scale)
	}
	return e.Concat(2, outs...) // [B, H, Lq, D]
}

// wideScoreBudget bounds the bytes of one block's score matrix.
var wideScoreBudget = 64 << 20

func (e *Engine) wideBlock(q, k, v *Tensor, scale float32) *Tensor {
	s := e.MatMul(q, k, false, true)    // [B, H, rows, Lk]
	p := e.Softmax(e.Scale(s, scale))   // [B, H, rows, Lk]
	return e.MatMul(p, v, false, false) // [B, H, rows, D]
}
