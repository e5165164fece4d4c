//! Convolutions run tile by tile over the samples (the unfolded input of a tile stays in
//! cache); on a batch spanning several tiles, with stride and padding, each kernel must equal
//! the same computation done by unfolding the whole batch at once.
use faer::{Accum, Mat};
use hesslab_data::rng::Rng;
use hesslab_model::Window;
use hesslab_model::kernels::{
    col2im_add, conv_forward, conv_forward_each, conv_input_signal, conv_input_signal_sum, conv_weight_grad, conv_weight_grad_each, im2col,
    weight_view,
};

fn rel(a: &Mat<f64>, b: &Mat<f64>) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for j in 0..a.ncols() {
        for i in 0..a.nrows() {
            num = num.max((a[(i, j)] - b[(i, j)]).abs());
            den = den.max(b[(i, j)].abs());
        }
    }
    num / den
}

#[test]
fn tiled_convolution_kernels_equal_the_whole_batch_unfolding() {
    // 28×28 images, 3 channels, 5×5 kernel: ~2 samples per 256 KB tile, so 9 samples are 5 tiles.
    for (stride, padding) in [([1, 1], [0, 0]), ([1, 1], [2, 1]), ([2, 1], [2, 1]), ([1, 2], [1, 2]), ([2, 3], [0, 1])] {
        let (c, c_out, n) = (3, 4, 9);
        let (ih, iw) = (28, 28);
        let oh = (ih + 2 * padding[0] - 5) / stride[0] + 1;
        let ow = (iw + 2 * padding[1] - 5) / stride[1] + 1;
        let win = Window { c, input: [ih, iw], output: [oh, ow], kernel: [5, 5], stride, padding };
        let mut rng = Rng::new(5);
        let input = Mat::from_fn(n * ih * iw, c, |_, _| rng.normal());
        let w: Vec<f64> = (0..c_out * win.patch()).map(|_| rng.normal()).collect();
        let g = Mat::from_fn(n * oh * ow, c_out, |_, _| rng.normal());
        let whole = im2col(input.as_ref(), &win);
        assert_eq!(whole.nrows(), n * oh * ow);

        let mut z = Mat::<f64>::zeros(n * oh * ow, c_out);
        conv_forward(input.as_ref(), &win, c_out, &w, 0, None, z.as_mut(), Accum::Replace);
        let z_ref = &whole * weight_view(&w, 0, c_out, win.patch());
        assert!(rel(&z, &z_ref) < 1e-14, "forward {stride:?} {padding:?}: {:e}", rel(&z, &z_ref));

        let mut grad = vec![0.0; w.len()];
        conv_weight_grad(input.as_ref(), g.as_ref(), &win, c_out, &mut grad, 0);
        let grad_ref = whole.transpose() * &g;
        let grad_mat = Mat::from_fn(win.patch(), c_out, |i, o| grad[o * win.patch() + i]);
        assert!(rel(&grad_mat, &grad_ref) < 1e-13, "weight gradient: {:e}", rel(&grad_mat, &grad_ref));

        let mut signal = Mat::<f64>::zeros(n * ih * iw, c);
        conv_input_signal(g.as_ref(), &win, c_out, &w, 0, signal.as_mut());
        let cols = &g * weight_view(&w, 0, c_out, win.patch()).transpose();
        let mut signal_ref = Mat::<f64>::zeros(n * ih * iw, c);
        col2im_add(cols.as_ref(), &win, &mut signal_ref);
        assert!(rel(&signal, &signal_ref) < 1e-14, "input signal: {:e}", rel(&signal, &signal_ref));

        // Two (signal, weight) pairs at once equal the two signals added.
        let w2: Vec<f64> = (0..c_out * win.patch() + 3).map(|_| rng.normal()).collect();
        let g2 = Mat::from_fn(n * oh * ow, c_out, |_, _| rng.normal());
        let mut sum = Mat::<f64>::zeros(n * ih * iw, c);
        conv_input_signal_sum(&[(g.as_ref(), &w, 0), (g2.as_ref(), &w2, 3)], &win, c_out, sum.as_mut());
        let mut sum_ref = signal.clone();
        conv_input_signal(g2.as_ref(), &win, c_out, &w2, 3, sum_ref.as_mut());
        assert!(rel(&sum, &sum_ref) < 1e-14, "summed input signals {stride:?} {padding:?}: {:e}", rel(&sum, &sum_ref));
    }
}

/// col2im is the adjoint of im2col: ⟨im2col(x), C⟩ = ⟨x, col2im(C)⟩ for random x and C, with
/// strides and paddings in both directions (an independent check of the scatter's index ranges).
#[test]
fn col2im_is_the_adjoint_of_im2col() {
    for (kernel, stride, padding) in
        [([5, 5], [1, 1], [0, 0]), ([3, 4], [1, 2], [1, 2]), ([2, 3], [2, 3], [0, 1]), ([4, 2], [3, 1], [2, 0])]
    {
        let (c, n, ih, iw) = (2, 3, 11, 13);
        let oh = (ih + 2 * padding[0] - kernel[0]) / stride[0] + 1;
        let ow = (iw + 2 * padding[1] - kernel[1]) / stride[1] + 1;
        let win = Window { c, input: [ih, iw], output: [oh, ow], kernel, stride, padding };
        let mut rng = Rng::new(11);
        let x = Mat::from_fn(n * ih * iw, c, |_, _| rng.normal());
        let cm = Mat::from_fn(n * oh * ow, win.patch(), |_, _| rng.normal());
        let unfolded = im2col(x.as_ref(), &win);
        let mut folded = Mat::<f64>::zeros(n * ih * iw, c);
        col2im_add(cm.as_ref(), &win, &mut folded);
        let dot =
            |a: &Mat<f64>, b: &Mat<f64>| (0..a.ncols()).map(|j| (0..a.nrows()).map(|i| a[(i, j)] * b[(i, j)]).sum::<f64>()).sum::<f64>();
        let (lhs, rhs) = (dot(&unfolded, &cm), dot(&x, &folded));
        assert!((lhs - rhs).abs() <= 1e-12 * lhs.abs().max(1.0), "{kernel:?} {stride:?} {padding:?}: {lhs} vs {rhs}");
    }
}

/// Evaluation runs a few samples at a time through every layer (activations in place, no
/// values kept): on a convnet with every layer kind, spanning several evaluation tiles, its
/// outputs equal the stored forward pass's (relative 1e-14), tanh and ReLU.
#[test]
fn tiled_evaluation_equals_the_stored_forward_pass() {
    use hesslab_model::{Activation, Init, LayerSpec, LossKind, NetArch, Shape, initialize_network};
    for act in [Activation::Relu, Activation::Tanh] {
        let conv = |c: usize, k: usize, s: usize, p: usize| serde_json::json!({"conv2d": {"out_channels": c, "kernel_size": k, "stride": s, "padding": p}});
        let a = act.name();
        let layers = serde_json::json!([
            conv(6, 5, 1, 2), a, {"max_pool2d": 2}, conv(8, 3, 2, 1), a, {"avg_pool2d": 2}, "flatten", {"linear": 12}, a, {"linear": 10}
        ]);
        let layers: Vec<LayerSpec> = serde_json::from_value(layers).unwrap();
        let arch = NetArch::new(Shape::Image { c: 2, h: 28, w: 28 }, layers, LossKind::CrossEntropy).unwrap();
        let net = initialize_network(&arch, Init::KaimingUniform, 0.0, 0.0, 7);
        let net = net.as_graph().expect("a graph network");
        let mut rng = Rng::new(9);
        // 2×28×28 inputs and 6×28×28 after the first convolution: ~5 samples per tile, so 23
        // samples are 5 tiles with a partial last one.
        let x = Mat::from_fn(23, 2 * 28 * 28, |_, _| rng.normal());
        let tiled = net.outputs(&net.params, x.as_ref());
        let stored = net.forward_with(&net.params, x.as_ref());
        let stored = stored.output().to_owned();
        assert_eq!((tiled.nrows(), tiled.ncols()), (23, 10));
        assert!(rel(&tiled, &stored) < 1e-14, "{act:?}: {:e}", rel(&tiled, &stored));
    }
}

/// The direct convolution (unit column stride) against the unfolded product plus bias, on
/// shapes that exercise its tiles: output rows that are not a multiple of the vector width
/// (1, 3, 4, 5, 9, 13, 24 positions; narrow rows in pairs, odd row counts), more channels than
/// one register tile holds (13, 25), row strides and padding, and accumulation into a destination.
#[test]
fn direct_convolution_equals_the_unfolded_product() {
    let cases = [
        // (c, ih, iw, kernel, stride, padding, c_out)
        (1, 28, 28, [5, 5], [1, 1], [0, 0], 10),
        (10, 12, 12, [5, 5], [1, 1], [0, 0], 20),
        (3, 7, 5, [3, 5], [2, 1], [1, 0], 13),
        (2, 9, 13, [1, 1], [1, 1], [0, 0], 25),
        (4, 6, 9, [3, 1], [3, 1], [2, 2], 1),
        (2, 5, 17, [2, 4], [1, 1], [0, 0], 7),
        // Rows narrower than a vector go in pairs; an odd row count leaves one alone.
        (3, 9, 6, [3, 3], [1, 1], [0, 0], 5),
        (2, 8, 3, [2, 3], [2, 1], [1, 1], 4),
    ];
    for (c, ih, iw, kernel, stride, padding, c_out) in cases {
        let oh = (ih + 2 * padding[0] - kernel[0]) / stride[0] + 1;
        let ow = (iw + 2 * padding[1] - kernel[1]) / stride[1] + 1;
        let win = Window { c, input: [ih, iw], output: [oh, ow], kernel, stride, padding };
        let n = 3;
        let mut rng = Rng::new(17);
        let input = Mat::from_fn(n * ih * iw, c, |_, _| rng.normal());
        let w: Vec<f64> = (0..c_out * (win.patch() + 1)).map(|_| rng.normal()).collect();
        let b = c_out * win.patch();
        let mut z_ref = im2col(input.as_ref(), &win) * weight_view(&w, 0, c_out, win.patch());
        for o in 0..c_out {
            z_ref.col_mut(o).iter_mut().for_each(|v| *v += w[b + o]);
        }
        let mut z = Mat::<f64>::zeros(n * oh * ow, c_out);
        conv_forward(input.as_ref(), &win, c_out, &w, 0, Some(b), z.as_mut(), Accum::Replace);
        assert!(rel(&z, &z_ref) < 1e-14, "{win:?} → {c_out}: {:e}", rel(&z, &z_ref));
        // Accumulating adds to what is there.
        let start = Mat::from_fn(n * oh * ow, c_out, |_, _| rng.normal());
        let mut acc = start.clone();
        conv_forward(input.as_ref(), &win, c_out, &w, 0, None, acc.as_mut(), Accum::Add);
        let mut acc_ref = im2col(input.as_ref(), &win) * weight_view(&w, 0, c_out, win.patch());
        acc_ref += &start;
        assert!(rel(&acc, &acc_ref) < 1e-14, "{win:?} accumulate: {:e}", rel(&acc, &acc_ref));
    }
}

/// Max pooling against a plain loop over each window in row-major order, on values with many
/// ties (a few levels): the maxima, and the argmax of the first maximum (PyTorch's choice),
/// for side-by-side, overlapping and gapped windows.
#[test]
fn max_pooling_takes_the_first_maximum_of_each_window() {
    use hesslab_model::kernels::max_pool;
    for (kernel, stride) in [([2, 2], [2, 2]), ([3, 3], [2, 2]), ([2, 2], [1, 1]), ([3, 2], [1, 3]), ([1, 2], [2, 2])] {
        let (c, n, ih, iw) = (3, 2, 9, 11);
        let (oh, ow) = ((ih - kernel[0]) / stride[0] + 1, (iw - kernel[1]) / stride[1] + 1);
        let win = Window { c, input: [ih, iw], output: [oh, ow], kernel, stride, padding: [0, 0] };
        let mut rng = Rng::new(23);
        let x = Mat::from_fn(n * ih * iw, c, |_, _| (rng.uniform_in(0.0, 4.0)).floor());
        let (out, arg) = max_pool(x.as_ref(), &win);
        let rows = n * oh * ow;
        for ch in 0..c {
            for s in 0..n {
                for y in 0..oh {
                    for xo in 0..ow {
                        let r = (s * oh + y) * ow + xo;
                        let mut best = (f64::NEG_INFINITY, usize::MAX);
                        for i in 0..kernel[0] {
                            for j in 0..kernel[1] {
                                let at = s * ih * iw + (y * stride[0] + i) * iw + xo * stride[1] + j;
                                if x[(at, ch)] > best.0 {
                                    best = (x[(at, ch)], at);
                                }
                            }
                        }
                        assert_eq!(out[(r, ch)], best.0, "{kernel:?}/{stride:?} value at {r}, {ch}");
                        assert_eq!(arg[ch * rows + r], best.1, "{kernel:?}/{stride:?} argmax at {r}, {ch}");
                    }
                }
            }
        }
    }
}

/// The R-operator's k-vector forms (one unfolding per tile shared by the k vectors on the
/// unfolding path) equal k single calls, bit for bit, on a direct (unit column stride) and an
/// unfolded (column stride 2) window, over several tiles.
#[test]
fn convolution_kernels_for_k_vectors_equal_k_single_calls() {
    for stride in [[1, 1], [1, 2]] {
        let (c, c_out, n, k, ih, iw) = (3, 4, 7, 3, 28, 28);
        let (oh, ow) = ((ih - 5) / stride[0] + 1, (iw - 5) / stride[1] + 1);
        let win = Window { c, input: [ih, iw], output: [oh, ow], kernel: [5, 5], stride, padding: [0, 0] };
        let mut rng = Rng::new(31);
        let input = Mat::from_fn(n * ih * iw, c, |_, _| rng.normal());
        let p = c_out * win.patch() + 5;
        let v = Mat::from_fn(p, k, |_, _| rng.normal());
        let rows = n * oh * ow;
        let g = Mat::from_fn(k * rows, c_out, |_, _| rng.normal());
        let start = Mat::from_fn(k * rows, c_out, |_, _| rng.normal());
        let mut each = start.clone();
        conv_forward_each(input.as_ref(), &win, c_out, v.as_ref(), 5, each.as_mut());
        let mut single = start.clone();
        for j in 0..k {
            let w: Vec<f64> = v.col(j).iter().copied().collect();
            conv_forward(input.as_ref(), &win, c_out, &w, 5, None, single.as_mut().subrows_mut(j * rows, rows), Accum::Add);
        }
        assert_eq!(each, single, "forward, stride {stride:?}");
        let mut each = Mat::from_fn(p, k, |_, _| rng.normal());
        let mut single = each.clone();
        conv_weight_grad_each(input.as_ref(), g.as_ref(), &win, c_out, &mut each, 5);
        for j in 0..k {
            conv_weight_grad(input.as_ref(), g.as_ref().subrows(j * rows, rows), &win, c_out, single.col_as_slice_mut(j), 5);
        }
        assert!(rel(&each, &single) < 1e-14, "weight gradient, stride {stride:?}: {:e}", rel(&each, &single));
    }
}
