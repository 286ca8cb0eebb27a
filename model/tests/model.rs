//! Behaviour of the Phi-3 model through its public API: agreement with transformers, real gradients,
//! cached decoding, packing, checkpoints and bad input.

use candle_core::{DType, Device, Tensor, D};
use phi4r_model::{
    load_frozen, loss, save, AttentionLayout, KvCache, LogitsAt, Phi3, Phi3Config, TrainableModel, WEIGHTS_FILE,
};
use std::path::PathBuf;

type R = anyhow::Result<()>;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_dtype(DType::F32))
        .and_then(|d| d.to_scalar::<f32>())
        .expect("diff")
}

/// A small config with grouped-query attention and partial rotary embeddings.
fn gqa_config(dtype_layers: usize) -> Phi3Config {
    let mut c = Phi3Config::tiny();
    c.vocab_size = 64;
    c.hidden_size = 32;
    c.intermediate_size = 48;
    c.num_hidden_layers = dtype_layers;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.partial_rotary_factor = 0.5;
    c
}

fn ids(v: &[u32], dev: &Device) -> Tensor {
    Tensor::new(v, dev).and_then(|t| t.unsqueeze(0)).expect("ids")
}

#[test]
fn matches_transformers_logits_on_committed_fixtures() -> R {
    let dev = Device::Cpu;
    for name in ["hf_phi3_gqa_longrope", "hf_phi3_tied"] {
        let dir = fixture(name);
        let model = load_frozen(&dir, DType::F32, &dev)?;
        let trainable = TrainableModel::load(&dir, DType::F32, &dev)?;
        let reference: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json"))?)?;
        for case in reference["cases"].as_array().expect("cases") {
            let tokens: Vec<u32> = serde_json::from_value(case["ids"].clone())?;
            let want: Vec<Vec<f32>> = serde_json::from_value(case["logits"].clone())?;
            let want = Tensor::new(want, &dev)?;
            let t = tokens.len();
            let layout = AttentionLayout::full(1, t);
            for m in [&model, &trainable.model] {
                let got = m.forward(&ids(&tokens, &dev), &layout)?.squeeze(0)?;
                let d = max_abs_diff(&got, &want);
                assert!(d < 1e-4, "{name}, {t} tokens: max |diff| = {d}");
            }
        }
    }
    Ok(())
}

fn lm_loss(model: &Phi3, tokens: &[u32], dev: &Device) -> anyhow::Result<Tensor> {
    let t = tokens.len() - 1;
    let input = ids(&tokens[..t], dev);
    let target = ids(&tokens[1..], dev);
    let logits = model.forward(&input, &AttentionLayout::full(1, t))?;
    let mask = Tensor::ones((1, t), logits.dtype(), dev)?;
    Ok(loss::masked_cross_entropy(&logits, &target, &mask)?)
}

#[test]
fn every_parameter_gets_a_nonzero_gradient() -> R {
    let dev = Device::Cpu;
    let cfg = gqa_config(2);
    let tm = TrainableModel::init(&cfg, 3, DType::F32, &dev)?;
    let tokens: Vec<u32> = (0..24).map(|i| (i * 7 + 3) % 64).collect();
    let grads = lm_loss(&tm.model, &tokens, &dev)?.backward()?;
    let vars = tm.vars();
    assert_eq!(vars.len(), 1 + cfg.num_hidden_layers * 6 + 1 + 1);
    let (nh, nkv, d) = (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim());
    for (name, var) in &vars {
        let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{name} has no gradient"));
        let norm = g.sqr()?.sum_all()?.to_scalar::<f32>()?;
        assert!(norm > 0.0, "{name} has a zero gradient");
        if name.ends_with("qkv_proj.weight") {
            // The q, k and v blocks must each be reached (a graph cut in RoPE or softmax zeroes q and k).
            for (block, start, rows) in [("q", 0, nh * d), ("k", nh * d, nkv * d), ("v", (nh + nkv) * d, nkv * d)] {
                let n = g.narrow(0, start, rows)?.sqr()?.sum_all()?.to_scalar::<f32>()?;
                assert!(n > 0.0, "{name}: {block} block has a zero gradient");
            }
        }
    }
    Ok(())
}

#[test]
fn autograd_agrees_with_finite_differences() -> R {
    let dev = Device::Cpu;
    let mut cfg = gqa_config(2);
    cfg.rope_theta = 100.0;
    let tm = TrainableModel::init(&cfg, 5, DType::F64, &dev)?;
    let tokens: Vec<u32> = (0..12).map(|i| (i * 11 + 5) % 64).collect();
    let grads = lm_loss(&tm.model, &tokens, &dev)?.backward()?;
    let vars = tm.vars();
    let d = cfg.head_dim();
    let h = cfg.hidden_size;
    // (name, flat index): a q row, a k row, a v row, o_proj, both norms, the MLP, the embedding.
    let probes = [
        ("model.layers.0.self_attn.qkv_proj.weight", 3 * h + 1),
        ("model.layers.0.self_attn.qkv_proj.weight", (cfg.num_attention_heads * d + 2) * h + 5),
        ("model.layers.1.self_attn.qkv_proj.weight", (cfg.num_attention_heads * d + 1) * h + 7),
        ("model.layers.1.self_attn.qkv_proj.weight", ((cfg.num_attention_heads + cfg.num_key_value_heads) * d + 3) * h),
        ("model.layers.0.self_attn.o_proj.weight", 17),
        ("model.layers.0.input_layernorm.weight", 4),
        ("model.layers.1.post_attention_layernorm.weight", 9),
        ("model.layers.1.mlp.gate_up_proj.weight", 100),
        ("model.layers.0.mlp.down_proj.weight", 33),
        ("model.norm.weight", 2),
        ("model.embed_tokens.weight", (tokens[3] as usize) * h + 6),
        ("lm_head.weight", (tokens[4] as usize) * h + 1),
    ];
    let eps = 1e-5;
    for (name, idx) in probes {
        let var = &vars.iter().find(|(n, _)| n == name).expect("param exists").1;
        let analytic = grads.get(var.as_tensor()).expect("grad").flatten_all()?.get(idx)?.to_scalar::<f64>()?;
        let orig = var.as_tensor().flatten_all()?.to_vec1::<f64>()?;
        let bumped = |delta: f64| -> anyhow::Result<f64> {
            let mut v = orig.clone();
            v[idx] += delta;
            var.set(&Tensor::from_vec(v, var.as_tensor().shape(), &dev)?)?;
            Ok(lm_loss(&tm.model, &tokens, &dev)?.to_scalar::<f64>()?)
        };
        let numeric = (bumped(eps)? - bumped(-eps)?) / (2.0 * eps);
        var.set(&Tensor::from_vec(orig, var.as_tensor().shape(), &dev)?)?;
        let err = (analytic - numeric).abs() / analytic.abs().max(numeric.abs()).max(1e-8);
        assert!(err < 1e-4, "{name}[{idx}]: autograd {analytic:e} vs finite difference {numeric:e}");
    }
    Ok(())
}

#[test]
fn cached_decoding_of_a_ragged_batch_equals_the_full_forward() -> R {
    let dev = Device::Cpu;
    let cfg = gqa_config(2);
    let model = TrainableModel::init(&cfg, 11, DType::F32, &dev)?.model.frozen()?;
    let prompts: Vec<Vec<u32>> = vec![vec![5, 9, 13, 2, 7], vec![8, 1], vec![3, 3, 4, 60]];
    let b = prompts.len();
    let t0 = prompts.iter().map(Vec::len).max().unwrap_or(0);
    // Left-pad into one batch.
    let mut flat = Vec::new();
    let mut valid = Vec::new();
    for p in &prompts {
        flat.extend(std::iter::repeat_n(0u32, t0 - p.len()).chain(p.iter().copied()));
        valid.extend(std::iter::repeat_n(0u8, t0 - p.len()).chain(std::iter::repeat_n(1u8, p.len())));
    }
    let mut cache = KvCache::new(&cfg, b, t0 + 6, DType::F32, &dev)?;
    let mut logits =
        model.forward_cached(&Tensor::from_vec(flat, (b, t0), &dev)?, &valid, &mut cache, LogitsAt::Last)?;
    let mut seqs = prompts.clone();
    for step in 0..6 {
        for (r, seq) in seqs.iter().enumerate() {
            let full = model.forward(&ids(seq, &dev), &AttentionLayout::full(1, seq.len()))?;
            let last = full.squeeze(0)?.get(seq.len() - 1)?;
            let d = max_abs_diff(&logits.get(r)?, &last);
            assert!(d < 1e-5, "row {r}, step {step}: |cached - full| = {d}");
        }
        let next: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
        for (s, &n) in seqs.iter_mut().zip(&next) {
            s.push(n);
        }
        if step < 5 {
            let input = Tensor::from_vec(next, (b, 1), &dev)?;
            logits = model.forward_cached(&input, &vec![1; b], &mut cache, LogitsAt::Last)?;
        }
    }
    // The cache refuses to overflow instead of corrupting memory.
    let over = Tensor::zeros((b, 1), DType::U32, &dev)?;
    model.forward_cached(&over, &vec![1; b], &mut cache, LogitsAt::Last)?;
    assert!(model.forward_cached(&over, &vec![1; b], &mut cache, LogitsAt::Last).is_err());
    Ok(())
}

#[test]
fn packed_documents_do_not_see_each_other_and_padding_changes_nothing() -> R {
    let dev = Device::Cpu;
    let cfg = gqa_config(2);
    let model = TrainableModel::init(&cfg, 12, DType::F32, &dev)?.model;
    let a: Vec<u32> = vec![4, 8, 15, 16, 23];
    let b: Vec<u32> = vec![42, 7, 9];
    let t = 10;
    let mut row = a.clone();
    row.extend(&b);
    row.extend([0, 0]);
    let layout = AttentionLayout::packed(t, &[vec![a.len(), b.len()]])?;
    let packed = model.forward(&ids(&row, &dev), &layout)?.squeeze(0)?;
    let la = model.forward(&ids(&a, &dev), &AttentionLayout::full(1, a.len()))?.squeeze(0)?;
    let lb = model.forward(&ids(&b, &dev), &AttentionLayout::full(1, b.len()))?.squeeze(0)?;
    assert!(max_abs_diff(&packed.narrow(0, 0, a.len())?, &la) < 1e-5);
    assert!(max_abs_diff(&packed.narrow(0, a.len(), b.len())?, &lb) < 1e-5);
    // The same documents right-padded in a batch.
    let mut batch = a.clone();
    batch.extend([0, 0]);
    batch.extend(&b);
    batch.extend([0, 0, 0, 0]);
    let mask: Vec<u8> = [1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 0].to_vec();
    let layout = AttentionLayout::from_mask(2, 7, &mask)?;
    let padded = model.forward(&Tensor::from_vec(batch, (2, 7), &dev)?, &layout)?;
    assert!(max_abs_diff(&padded.get(0)?.narrow(0, 0, a.len())?, &la) < 1e-5);
    assert!(max_abs_diff(&padded.get(1)?.narrow(0, 0, b.len())?, &lb) < 1e-5);
    Ok(())
}

#[test]
fn checkpoints_round_trip_with_hf_names_and_frozen_copies_stay_frozen() -> R {
    let dev = Device::Cpu;
    for tie in [false, true] {
        let mut cfg = gqa_config(2);
        cfg.tie_word_embeddings = tie;
        let tm = TrainableModel::init(&cfg, 21, DType::F32, &dev)?;
        let dir = tempfile::tempdir()?;
        save(&tm.model, None, dir.path())?;
        let names: Vec<String> =
            candle_core::safetensors::load(dir.path().join(WEIGHTS_FILE), &dev)?.into_keys().collect();
        assert!(names.contains(&"model.layers.1.self_attn.qkv_proj.weight".to_string()));
        assert!(names.contains(&"model.layers.0.mlp.gate_up_proj.weight".to_string()));
        assert_eq!(names.contains(&"lm_head.weight".to_string()), !tie);
        let back = load_frozen(dir.path(), DType::F32, &dev)?;
        assert_eq!(back.config(), &cfg);
        let x = ids(&[1, 2, 3, 4], &dev);
        let l = AttentionLayout::full(1, 4);
        let before = tm.model.forward(&x, &l)?;
        assert!(max_abs_diff(&before, &back.forward(&x, &l)?) < 1e-6);
        // A frozen copy does not follow later updates of the trainable weights.
        let frozen = tm.model.frozen()?;
        for (_, v) in tm.vars() {
            v.set(&(v.as_tensor() * 0.5)?)?;
        }
        assert!(max_abs_diff(&before, &frozen.forward(&x, &l)?) < 1e-6);
        assert!(max_abs_diff(&before, &tm.model.forward(&x, &l)?) > 1e-3);
    }
    Ok(())
}

#[test]
fn bad_checkpoints_and_ids_are_named_in_the_error() -> R {
    let dev = Device::Cpu;
    let cfg = gqa_config(1);
    let tm = TrainableModel::init(&cfg, 1, DType::F32, &dev)?;
    let dir = tempfile::tempdir()?;
    save(&tm.model, None, dir.path())?;
    let path = dir.path().join(WEIGHTS_FILE);
    let mut tensors = candle_core::safetensors::load(&path, &dev)?;
    tensors.remove("model.layers.0.mlp.down_proj.weight");
    candle_core::safetensors::save(&tensors, &path)?;
    let e = load_frozen(dir.path(), DType::F32, &dev).err().expect("must fail").to_string();
    assert!(e.contains("model.layers.0.mlp.down_proj.weight") && e.contains("missing"), "{e}");
    tensors.insert("model.layers.0.mlp.down_proj.weight".into(), Tensor::zeros((3, 3), DType::F32, &dev)?);
    candle_core::safetensors::save(&tensors, &path)?;
    let e = TrainableModel::load(dir.path(), DType::F32, &dev).err().expect("must fail").to_string();
    assert!(e.contains("model.layers.0.mlp.down_proj.weight") && e.contains("[3, 3]"), "{e}");

    let e = tm.model.forward(&ids(&[1, 64, 2], &dev), &AttentionLayout::full(1, 3)).expect_err("must fail").to_string();
    assert!(e.contains("token id 64") && e.contains("position 1"), "{e}");

    std::fs::write(
        dir.path().join("config.json"),
        r#"{"model_type": "phi3", "vocab_size": 64, "hidden_size": 30, "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 4}"#,
    )?;
    let e = load_frozen(dir.path(), DType::F32, &dev).err().expect("must fail").to_string();
    assert!(e.contains("hidden_size") && e.contains("config.json"), "{e}");
    Ok(())
}

#[test]
fn fused_and_composed_kernels_agree_on_logits_and_every_gradient() -> R {
    let dev = Device::Cpu;
    let cfg = gqa_config(2);
    let tm = TrainableModel::init(&cfg, 9, DType::F32, &dev)?;
    assert_eq!(tm.model.kernels(), phi4r_model::Kernels::Fused);
    let composed = TrainableModel::init(&cfg, 9, DType::F32, &dev)?;
    let composed_vars = composed.vars();
    let composed_model = composed.model.with_kernels(phi4r_model::Kernels::Composed);
    // A packed row and a padded row in one batch.
    let tokens: Vec<u32> = (0..32).map(|i| (i * 13 + 1) % 64).collect();
    let input = Tensor::from_vec(tokens, (2, 16), &dev)?;
    let layout =
        AttentionLayout::from_segments(2, 16, [vec![1; 6], vec![2; 7], vec![0; 3], vec![1; 12], vec![0; 4]].concat())?;
    let a = tm.model.forward(&input, &layout)?;
    let b = composed_model.forward(&input, &layout)?;
    assert!(max_abs_diff(&a, &b) < 1e-5);
    let target = input.clone();
    let mask = Tensor::from_vec([vec![1f32; 13], vec![0.; 3], vec![1.; 12], vec![0.; 4]].concat(), (2, 16), &dev)?;
    let ga = loss::masked_cross_entropy(&a, &target, &mask)?.backward()?;
    let gb = loss::masked_cross_entropy(&b, &target, &mask)?.backward()?;
    for ((name, va), (_, vb)) in tm.vars().iter().zip(composed_vars.iter()) {
        let (x, y) = (ga.get(va.as_tensor()).expect("grad"), gb.get(vb.as_tensor()).expect("grad"));
        let d = max_abs_diff(x, y);
        assert!(d < 1e-4, "{name}: fused vs composed gradient differ by {d}");
    }
    Ok(())
}
