//! The embedded chat model: SmolLM2-135M-Instruct from a GGUF file.
//!
//! On CPUs with AVX-512 VNNI it runs as [`super::llama`]: candle's ops with the linear layers on
//! the 16-bit integer kernel. Elsewhere it runs on candle's quantized llama. The file ships Q4_1
//! weights, for which candle has no x86 SIMD kernel; for candle they are requantised to Q8_0 (which
//! has AVX2 and AVX-512 VNNI kernels chosen at run time) when the model loads, so one portable
//! binary decodes at full speed on CPUs that have those instructions. Q8_0 holds every Q4_1 value
//! almost exactly, so nothing the model learned is lost twice.
//!
//! One worker thread owns the model and interleaves the active conversations a token at a time, so
//! a long answer does not hold a short one back. Each conversation has its own key-value cache
//! (cloning the model clones only `Arc`s to the weights).

use std::io::Cursor;
use std::path::Path;
use std::sync::mpsc;

use anyhow::Context as _;
use candle_core::quantized::tokenizer::TokenizerFromGguf as _;
use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::quantized_llama::ModelWeights;
use tokenizers::Tokenizer;
use tokio::sync::mpsc::UnboundedSender;

/// The longest conversation (prompt and answer, in tokens) the embedded model accepts; its KV cache
/// then takes about 90 MiB.
pub const CONTEXT_TOKENS: usize = 2048;

/// A chat message after validation.
#[derive(Debug, Clone)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// What a request asks of the generation.
#[derive(Debug, Clone)]
pub struct Params {
    pub max_tokens: usize,
    pub temperature: f64,
    pub top_p: f64,
    pub seed: u64,
    pub stop: Vec<String>,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
}

/// What the worker tells a request, in order: text as it is decoded, then one `Done` (or `Failed`).
#[derive(Debug)]
pub enum Event {
    Text(String),
    Done {
        finish_reason: &'static str,
        prompt_tokens: usize,
        completion_tokens: usize,
    },
    /// The request cannot be answered as asked (a 400, not a fault).
    Rejected(String),
    Failed(String),
}

/// A conversation waiting for the worker.
#[derive(Debug)]
pub struct Job {
    pub messages: Vec<Message>,
    pub params: Params,
    pub events: UnboundedSender<Event>,
}

/// How the model runs: its linear layers on the 16-bit integer kernel (CPUs with AVX-512 VNNI),
/// or candle's `quantized_llama` with Q8_0 weights, padded for candle's VNNI kernels or not.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Integer(matmul::Kernel),
    Candle { pad: bool },
}

impl Backend {
    /// The integer kernel where the CPU has it; else candle, padded where it has VNNI.
    pub fn best() -> Self {
        match matmul::Kernel::detect() {
            Some(kernel) => Self::Integer(kernel),
            None => Self::Candle { pad: super::vnni() },
        }
    }
}

#[derive(Debug)]
enum Model {
    Integer(super::llama::Llama),
    Candle(ModelWeights),
}

/// One conversation's state in the model: its key-value cache.
enum State {
    Integer(super::llama::Cache),
    Candle(Box<ModelWeights>),
}

/// The model and its tokenizer, loaded once.
#[derive(Debug)]
pub struct Chat {
    model: Model,
    pub tokenizer: Tokenizer,
    end_of_turn: u32,
    end_of_text: u32,
}

impl Chat {
    /// Reads the GGUF file for the best backend on this CPU and builds the tokenizer.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        Self::load_with(path, Backend::best())
    }

    /// [`Chat::load`] on a chosen backend (tests compare them).
    pub fn load_with(path: &Path, backend: Backend) -> anyhow::Result<Self> {
        let mut file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let content = gguf_file::Content::read(&mut file)
            .with_context(|| format!("{} is not a GGUF file", path.display()))?;
        let tokenizer = tokenizer(&content)?;
        let id = |token: &str| {
            tokenizer
                .token_to_id(token)
                .with_context(|| format!("the tokenizer has no {token}"))
        };
        let (end_of_turn, end_of_text) = (id("<|im_end|>")?, id("<|endoftext|>")?);
        let model = match backend {
            Backend::Integer(kernel) => Model::Integer(super::llama::Llama::load(
                &content,
                &mut file,
                kernel,
                CONTEXT_TOKENS,
            )?),
            Backend::Candle { pad } => Model::Candle(candle_model(content, &mut file, pad)?),
        };
        Ok(Self {
            model,
            end_of_turn,
            end_of_text,
            tokenizer,
        })
    }

    /// A new conversation's (empty) state.
    fn start(&self) -> State {
        match &self.model {
            Model::Integer(llama) => State::Integer(llama.cache()),
            Model::Candle(model) => State::Candle(Box::new(model.clone())),
        }
    }

    /// Reads `tokens` at `position` onwards into `state`; returns the next token's logits
    /// (1 × vocabulary).
    fn forward(
        &self,
        state: &mut State,
        tokens: &[u32],
        position: usize,
    ) -> candle_core::Result<Tensor> {
        match (&self.model, state) {
            (Model::Integer(llama), State::Integer(cache)) => {
                llama.forward(tokens, position, cache)
            }
            (Model::Candle(_), State::Candle(model)) => {
                model.forward(&Tensor::new(tokens, &Device::Cpu)?.unsqueeze(0)?, position)
            }
            _ => Err(candle_core::Error::Msg(
                "a conversation's state belongs to another model".into(),
            )),
        }
    }

    /// The prompt in SmolLM2's chat template (ChatML, with the model's own default system message
    /// when the conversation brings none), ending where the assistant's answer begins.
    pub fn prompt(&self, messages: &[Message]) -> anyhow::Result<Vec<u32>> {
        let mut text = String::new();
        if messages.first().is_none_or(|m| m.role != "system") {
            text.push_str(
                "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n",
            );
        }
        for message in messages {
            text.push_str("<|im_start|>");
            text.push_str(&message.role);
            text.push('\n');
            text.push_str(&message.content);
            text.push_str("<|im_end|>\n");
        }
        text.push_str("<|im_start|>assistant\n");
        let encoding = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| anyhow::anyhow!("cannot tokenize the prompt: {e}"))?;
        Ok(encoding.get_ids().to_vec())
    }
}

/// candle's `quantized_llama` for the GGUF `content` of `file`, its Q4_1 tensors requantised to
/// Q8_0 (and padded for the VNNI kernels when `pad`, see [`Padding`]).
fn candle_model(
    content: gguf_file::Content,
    file: &mut std::fs::File,
    pad: bool,
) -> anyhow::Result<ModelWeights> {
    let padding = if pad {
        Padding::for_model(&content)?
    } else {
        None
    };
    let mut tensors = Vec::with_capacity(content.tensor_infos.len());
    for name in content.tensor_infos.keys() {
        let tensor = content.tensor(file, name, &Device::Cpu)?;
        let tensor = match &padding {
            Some(padding) => padding.tensor(name, tensor)?,
            None if tensor.dtype() == GgmlDType::Q4_1 => {
                QTensor::quantize(&tensor.dequantize(&Device::Cpu)?, GgmlDType::Q8_0)?
            }
            None => tensor,
        };
        tensors.push((name.clone(), tensor));
    }
    let mut metadata = content.metadata.clone();
    if let Some(padding) = &padding {
        padding.metadata(&mut metadata)?;
    }
    let metadata: Vec<(&str, &gguf_file::Value)> =
        metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut requantised = Cursor::new(Vec::new());
    gguf_file::write(&mut requantised, &metadata, &refs)?;
    drop(tensors);
    requantised.set_position(0);
    let content2 = gguf_file::Content::read(&mut requantised)?;
    let model = ModelWeights::from_gguf(content2, &mut requantised, &Device::Cpu)?;
    if padding.is_some() {
        // candle lays the weights out for the VNNI kernels on first use; do it now, not in the
        // first request (about 150 ms here).
        let input = Tensor::new(&[0u32, 1], &Device::Cpu)?.unsqueeze(0)?;
        model.clone().forward(&input, 0)?;
    }
    Ok(model)
}

/// Zero-padding that gives a llama model the shapes candle's repacked kernels need: every matrix's
/// inner dimension a multiple of 256. SmolLM2's hidden size is 576, so its prompt would otherwise be
/// read on the slow path (1.7 s for 300 tokens here).
///
/// The padding adds attention heads and hidden units whose weights are zero, so the model computes
/// the same function: the new hidden units stay exactly zero through every layer (their embedding
/// columns, output rows and norm weights are zero), the new query heads score every key equally but
/// read values that are zero, and their output columns are zero anyway. Only RMS normalisation
/// sees the width: it divides by the number of units, so its weights are scaled by
/// `sqrt(hidden / padded)` and its epsilon by `hidden / padded`, which leaves
/// `x / sqrt(mean(x^2) + eps) * w` unchanged.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Padding {
    hidden: usize,
    padded: usize,
    kv: usize,
    padded_kv: usize,
    padded_heads: usize,
    padded_kv_heads: usize,
}

impl Padding {
    /// The padding `content` needs, or `None` when its shapes already suit the kernels.
    fn for_model(content: &gguf_file::Content) -> anyhow::Result<Option<Self>> {
        let get = |key: &str| -> anyhow::Result<usize> {
            let value = content
                .metadata
                .get(key)
                .with_context(|| format!("the model has no {key}"))?;
            Ok(value.to_u32()? as usize)
        };
        let hidden = get("llama.embedding_length")?;
        let heads = get("llama.attention.head_count")?;
        let kv_heads = get("llama.attention.head_count_kv")?;
        Ok(Self::for_shape(hidden, heads, kv_heads))
    }

    fn for_shape(hidden: usize, heads: usize, kv_heads: usize) -> Option<Self> {
        const BLOCK: usize = 256;
        if hidden.is_multiple_of(BLOCK) || heads == 0 || kv_heads == 0 {
            return None;
        }
        if !hidden.is_multiple_of(heads) || !heads.is_multiple_of(kv_heads) {
            return None;
        }
        let head_dim = hidden / heads;
        let group = heads / kv_heads;
        // The width must hold whole groups of heads (each key-value head serves `group` query heads)
        // and be a multiple of the kernels' block.
        let unit = num_lcm(BLOCK, head_dim * group);
        let padded = hidden.div_ceil(unit) * unit;
        let padded_heads = padded / head_dim;
        let padded_kv_heads = padded_heads / group;
        Some(Self {
            hidden,
            padded,
            kv: kv_heads * head_dim,
            padded_kv: padded_kv_heads * head_dim,
            padded_heads,
            padded_kv_heads,
        })
    }

    /// `tensor` padded with zeros along each dimension that is the hidden or key-value width, as
    /// Q8_0 when it was quantised; norm weights are scaled as described above.
    fn tensor(&self, name: &str, tensor: QTensor) -> anyhow::Result<QTensor> {
        let quantised = !matches!(tensor.dtype(), GgmlDType::F32 | GgmlDType::F16);
        let mut values = tensor.dequantize(&Device::Cpu)?;
        for (dim, size) in tensor.shape().dims().to_vec().into_iter().enumerate() {
            let target = if size == self.hidden {
                self.padded
            } else if size == self.kv {
                self.padded_kv
            } else {
                continue;
            };
            values = values.pad_with_zeros(dim, 0, target - size)?;
        }
        if name.ends_with("_norm.weight") {
            values = (values * (self.hidden as f64 / self.padded as f64).sqrt())?;
        }
        let dtype = if quantised {
            GgmlDType::Q8_0
        } else {
            GgmlDType::F32
        };
        Ok(QTensor::quantize(&values, dtype)?)
    }

    /// The metadata of the padded model.
    fn metadata(
        &self,
        metadata: &mut std::collections::HashMap<String, gguf_file::Value>,
    ) -> anyhow::Result<()> {
        let set = |metadata: &mut std::collections::HashMap<String, gguf_file::Value>,
                   key: &str,
                   value: usize| {
            metadata.insert(key.to_string(), gguf_file::Value::U32(value as u32));
        };
        set(metadata, "llama.embedding_length", self.padded);
        set(metadata, "llama.attention.head_count", self.padded_heads);
        set(
            metadata,
            "llama.attention.head_count_kv",
            self.padded_kv_heads,
        );
        let key = "llama.attention.layer_norm_rms_epsilon";
        let eps = metadata
            .get(key)
            .with_context(|| format!("the model has no {key}"))?
            .to_f32()?;
        let scaled = eps * (self.hidden as f32 / self.padded as f32);
        metadata.insert(key.to_string(), gguf_file::Value::F32(scaled));
        Ok(())
    }
}

fn num_lcm(a: usize, b: usize) -> usize {
    let gcd = |mut a: usize, mut b: usize| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    a / gcd(a, b) * b
}

/// SmolLM2's tokenizer from the GGUF metadata. candle's reader maps the `smollm` pre-tokenizer to
/// GPT-2's, which adds a space before the text; SmolLM2 splits digits one by one and adds none.
fn tokenizer(content: &gguf_file::Content) -> anyhow::Result<Tokenizer> {
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::pre_tokenizers::digits::Digits;
    use tokenizers::pre_tokenizers::sequence::Sequence;
    let mut tokenizer = Tokenizer::from_gguf(content)?;
    tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
        Digits::new(true).into(),
        ByteLevel::new(false, true, true).into(),
    ])));
    tokenizer.with_post_processor(None::<tokenizers::PostProcessorWrapper>);
    Ok(tokenizer)
}

/// One conversation being answered.
struct Active {
    state: State,
    sampler: LogitsProcessor,
    params: Params,
    events: UnboundedSender<Event>,
    prompt_tokens: usize,
    position: usize,
    next: u32,
    answer: Vec<u32>,
    counts: std::collections::HashMap<u32, u32>,
    /// How much of the decoded answer has been sent.
    sent: usize,
}

/// How many conversations the worker interleaves; the rest wait in the queue.
pub const MAX_ACTIVE: usize = 4;

/// Runs the worker: loads the model, then answers jobs until the queue closes.
pub fn run(
    path: &Path,
    preload: bool,
    jobs: mpsc::Receiver<Job>,
    ready: std::sync::Arc<super::Ready>,
) {
    let Some((chat, waiting)) = super::load_model(
        "chat model",
        preload,
        &jobs,
        &ready,
        || Chat::load(path),
        |job: Job, message| {
            let _ = job.events.send(Event::Failed(message));
        },
    ) else {
        return;
    };
    let mut active: Vec<Active> = Vec::new();
    if let Some(job) = waiting {
        admit(&chat, job, &mut active);
    }
    ready.set_active(active.len());
    loop {
        if active.is_empty() {
            match jobs.recv() {
                Ok(job) => admit(&chat, job, &mut active),
                Err(_) => return,
            }
        }
        while active.len() < MAX_ACTIVE {
            match jobs.try_recv() {
                Ok(job) => admit(&chat, job, &mut active),
                Err(_) => break,
            }
        }
        // Counted before any answer is sent, so /health never lags what a client already sees.
        ready.set_active(active.len());
        active.retain_mut(|conversation| step(&chat, conversation));
        ready.set_active(active.len());
    }
}

/// Reads the prompt into a fresh cache and picks the first token.
fn admit(chat: &Chat, job: Job, active: &mut Vec<Active>) {
    if job.events.is_closed() {
        return;
    }
    let prompt = match chat.prompt(&job.messages) {
        Ok(prompt) if prompt.len() < CONTEXT_TOKENS => prompt,
        Ok(prompt) => {
            let _ = job.events.send(Event::Rejected(format!(
                "this model's maximum context length is {CONTEXT_TOKENS} tokens; the messages take {}",
                prompt.len()
            )));
            return;
        }
        Err(error) => {
            let _ = job.events.send(Event::Rejected(format!("{error:#}")));
            return;
        }
    };
    let sampling = if job.params.temperature <= 0.0 {
        Sampling::ArgMax
    } else if job.params.top_p < 1.0 {
        Sampling::TopP {
            p: job.params.top_p,
            temperature: job.params.temperature,
        }
    } else {
        Sampling::All {
            temperature: job.params.temperature,
        }
    };
    let mut conversation = Active {
        state: chat.start(),
        sampler: LogitsProcessor::from_sampling(job.params.seed, sampling),
        prompt_tokens: prompt.len(),
        position: 0,
        next: 0,
        answer: Vec::new(),
        counts: Default::default(),
        sent: 0,
        params: job.params,
        events: job.events,
    };
    let first = chat.forward(&mut conversation.state, &prompt, 0);
    match first.and_then(|logits| sample(&mut conversation, &logits)) {
        Ok(token) => {
            conversation.position = prompt.len();
            conversation.next = token;
            active.push(conversation);
        }
        Err(error) => {
            let _ = conversation
                .events
                .send(Event::Failed(format!("generation failed: {error}")));
        }
    }
}

fn sample(conversation: &mut Active, logits: &Tensor) -> candle_core::Result<u32> {
    let logits = logits.squeeze(0)?;
    let (frequency, presence) = (
        conversation.params.frequency_penalty,
        conversation.params.presence_penalty,
    );
    let counts = &conversation.counts;
    conversation.sampler.sample_f(&logits, |values| {
        if frequency == 0.0 && presence == 0.0 {
            return;
        }
        for (&token, &count) in counts {
            if let Some(value) = values.get_mut(token as usize) {
                *value -= frequency * count as f32 + presence;
            }
        }
    })
}

/// Takes the pending token, sends what it adds to the text, and computes the next one; `false` when
/// the conversation is over (finished, failed, or its client went away).
fn step(chat: &Chat, conversation: &mut Active) -> bool {
    if conversation.events.is_closed() {
        return false;
    }
    let token = conversation.next;
    let finish = |conversation: &Active, reason: &'static str| {
        let _ = conversation.events.send(Event::Done {
            finish_reason: reason,
            prompt_tokens: conversation.prompt_tokens,
            completion_tokens: conversation.answer.len(),
        });
        false
    };
    if token == chat.end_of_turn || token == chat.end_of_text {
        flush(chat, conversation, true);
        return finish(conversation, "stop");
    }
    conversation.answer.push(token);
    *conversation.counts.entry(token).or_default() += 1;
    if flush(chat, conversation, false) {
        return finish(conversation, "stop");
    }
    if conversation.answer.len() >= conversation.params.max_tokens
        || conversation.position + 1 >= CONTEXT_TOKENS
    {
        flush(chat, conversation, true);
        return finish(conversation, "length");
    }
    let logits = chat.forward(&mut conversation.state, &[token], conversation.position);
    match logits.and_then(|logits| sample(conversation, &logits)) {
        Ok(next) => {
            conversation.position += 1;
            conversation.next = next;
            true
        }
        Err(error) => {
            let _ = conversation
                .events
                .send(Event::Failed(format!("generation failed: {error}")));
            false
        }
    }
}

/// Sends the decoded text not yet sent. Text that could be the start of a stop sequence is held back
/// until it is known not to be one; `true` when a stop sequence appeared (the text before it is sent).
fn flush(chat: &Chat, conversation: &mut Active, last: bool) -> bool {
    let Ok(text) = chat.tokenizer.decode(&conversation.answer, true) else {
        return false;
    };
    // A token that ends inside a multi-byte character decodes to U+FFFD until the rest arrives.
    if !last && text.ends_with('\u{FFFD}') {
        return false;
    }
    let stop = conversation
        .params
        .stop
        .iter()
        .filter_map(|s| text.get(conversation.sent..)?.find(s.as_str()))
        .min()
        .map(|at| conversation.sent + at);
    let mut end = match stop {
        Some(at) => at,
        None if last => text.len(),
        None => {
            let hold = conversation
                .params
                .stop
                .iter()
                .map(|s| s.len().saturating_sub(1))
                .max()
                .unwrap_or(0);
            text.len().saturating_sub(hold)
        }
    };
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if end > conversation.sent {
        let _ = conversation
            .events
            .send(Event::Text(text[conversation.sent..end].to_string()));
        conversation.sent = end;
    }
    stop.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_fits_the_kernels_and_keeps_whole_head_groups() {
        let smollm = Padding::for_shape(576, 9, 3).unwrap();
        assert_eq!(
            (
                smollm.padded,
                smollm.padded_heads,
                smollm.padded_kv,
                smollm.padded_kv_heads
            ),
            (768, 12, 256, 4)
        );
        assert_eq!(Padding::for_shape(768, 12, 4), None);
        assert_eq!(Padding::for_shape(2048, 32, 8), None);
        let odd = Padding::for_shape(960, 15, 5).unwrap();
        assert!(odd.padded.is_multiple_of(256) && odd.padded_heads.is_multiple_of(3));
    }

    fn load(backend: Backend) -> Chat {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../.edgerag/models")
            .join(super::super::CHAT_FILE);
        Chat::load_with(&path, backend).unwrap()
    }

    /// The next-token logits after reading `prompt` in pieces of the given lengths.
    fn logits(chat: &Chat, prompt: &[u32], pieces: &[usize]) -> Vec<f32> {
        let mut state = chat.start();
        let mut position = 0;
        let mut out = None;
        for &length in pieces {
            let piece = &prompt[position..position + length];
            out = Some(chat.forward(&mut state, piece, position).unwrap());
            position += length;
        }
        assert_eq!(position, prompt.len());
        out.unwrap().squeeze(0).unwrap().to_vec1::<f32>().unwrap()
    }

    fn argmax(v: &[f32]) -> Option<usize> {
        v.iter()
            .enumerate()
            .max_by(|x, y| x.1.total_cmp(y.1))
            .map(|(i, _)| i)
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (norm(a) * norm(b))
    }

    fn prompt(chat: &Chat) -> Vec<u32> {
        let messages = [Message {
            role: "user".into(),
            content: "Which planet is closest to the sun, and how long is its year?".into(),
        }];
        chat.prompt(&messages).unwrap()
    }

    /// The padded model must be the same model: same next-token scores for a real prompt.
    #[test]
    fn the_padded_model_computes_what_the_original_does() {
        let plain = load(Backend::Candle { pad: false });
        let padded = load(Backend::Candle { pad: true });
        let prompt = prompt(&plain);
        let whole = [prompt.len()];
        let (a, b) = (
            logits(&plain, &prompt, &whole),
            logits(&padded, &prompt, &whole),
        );
        assert_eq!(a.len(), b.len());
        assert_eq!(argmax(&a), argmax(&b));
        let cosine = cosine(&a, &b);
        assert!(cosine > 0.999, "cosine of the logits {cosine}");
    }

    /// The integer model computes what candle's does, read whole or a token at a time after a
    /// first part (a decode step after a prompt).
    #[test]
    fn the_integer_model_computes_what_candles_does() {
        let Some(kernel) = matmul::Kernel::detect() else {
            eprintln!("skipped: this CPU lacks AVX-512 VNNI");
            return;
        };
        let candle = load(Backend::Candle { pad: false });
        let integer = load(Backend::Integer(kernel));
        let prompt = prompt(&candle);
        let n = prompt.len();
        let want = logits(&candle, &prompt, &[n]);
        for pieces in [vec![n], vec![n - 3, 1, 1, 1]] {
            let got = logits(&integer, &prompt, &pieces);
            assert_eq!(argmax(&got), argmax(&want), "{pieces:?}");
            let cosine = cosine(&got, &want);
            assert!(cosine > 0.999, "{pieces:?}: cosine of the logits {cosine}");
        }
    }
}
