using System.Buffers;
using System.Buffers.Text;
using System.Text;
using System.Text.Json;
using Bastion.Configuration;

namespace Bastion.Observability.LogFormats;

/// <summary>
/// SPEC 5's JSON object per line. Every line has the common fields in one order (null or 0 where they do not
/// apply); `upstream_ms`, `tls` and `sni` appear only where they apply. See docs/access-log.md.
/// Written by hand (one line per request is on every request's bill): field names are fixed UTF-8, the timestamp's
/// first 20 bytes are made once a second, numbers go straight to bytes, and a value of printable ASCII without `"` or
/// `\` is copied as it is; any other value is escaped by System.Text.Json with the relaxed encoder, so the line is
/// byte for byte what <see cref="Utf8JsonWriter"/> wrote before.
/// </summary>
public sealed class JsonLogFormat : AccessLogFormat
{
    // Relaxed escaping: a log line is not HTML, and "RCPT TO:<a@b>" should read as written.
    static readonly JsonWriterOptions Options = new()
    {
        SkipValidation = true,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>Writes the values that need escaping (rare: controls, quotes, non-ASCII), as it wrote every value before.</summary>
    Utf8JsonWriter? _escaper;

    /// <summary>Characters a JSON string carries as they are under any encoder: printable ASCII but `"` and `\`.</summary>
    static readonly SearchValues<char> Plain = SearchValues.Create(
        " !#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_`abcdefghijklmnopqrstuvwxyz{|}~");

    // "yyyy-MM-ddTHH:mm:ss." of the last second a line was written in: the log writer is one task.
    long _second = -1;
    readonly byte[] _secondText = new byte[20];

    public override void Write(AccessEvent e, IBufferWriter<byte> output)
    {
        var w = new Out(output, this);
        w.Raw("{\"ts\":\""u8);
        Timestamp(ref w, e.Ts.ToUniversalTime());
        w.Raw("\",\"event\":"u8);
        w.String(e.Event);
        w.Raw(",\"id\":"u8);
        if (e.IdText is { } idText) w.String(idText);
        else w.Id(e.IdNumber);
        w.Raw(",\"conn\":"u8);
        w.String(e.Conn);
        w.Raw(",\"listener\":"u8);
        w.String(e.Listener);
        w.Raw(",\"type\":"u8);
        w.String(e.Type);
        w.Raw(",\"client\":"u8);
        w.String(e.Client);
        w.Raw(",\"user\":"u8);
        w.String(e.User);
        w.Raw(",\"request\":"u8);
        w.String(e.Request);
        w.Raw(e.Verdict switch
        {
            Verdict.Allow => ",\"verdict\":\"allow\",\"rule\":"u8,
            Verdict.Deny => ",\"verdict\":\"deny\",\"rule\":"u8,
            _ => ",\"verdict\":null,\"rule\":"u8,
        });
        w.String(e.Rule);
        w.Raw(",\"reason\":"u8);
        w.String(e.Reason);
        w.Raw(",\"status\":"u8);
        w.Number(e.Status);
        w.Raw(",\"upstream\":"u8);
        w.String(e.Upstream);
        if (e.UpstreamMs is { } um)
        {
            w.Raw(",\"upstream_ms\":"u8);
            w.Millis(um);
        }
        if (e.Tls is not null)
        {
            w.Raw(",\"tls\":"u8);
            w.String(e.Tls);
        }
        if (e.Sni is not null)
        {
            w.Raw(",\"sni\":"u8);
            w.String(e.Sni);
        }
        w.Raw(",\"bytes_in\":"u8);
        w.Number(e.BytesIn);
        w.Raw(",\"bytes_out\":"u8);
        w.Number(e.BytesOut);
        w.Raw(",\"duration_ms\":"u8);
        w.Millis(e.DurationMs);
        w.Raw("}"u8);
    }

    /// <summary>RFC 3339 with milliseconds (truncated, as the "fff" format did): the second's text is kept.</summary>
    void Timestamp(ref Out w, DateTime utc)
    {
        long ticks = utc.Ticks;
        long second = ticks / TimeSpan.TicksPerSecond;
        if (second != _second)
        {
            var t = new DateTime(second * TimeSpan.TicksPerSecond, DateTimeKind.Utc);
            Span<char> text = stackalloc char[20];
            t.TryFormat(text, out _, "yyyy-MM-dd'T'HH:mm:ss'.'", System.Globalization.CultureInfo.InvariantCulture);
            Ascii.FromUtf16(text, _secondText, out _);
            _second = second;
        }
        w.Raw(_secondText);
        int ms = (int)(ticks % TimeSpan.TicksPerSecond / TimeSpan.TicksPerMillisecond);
        Span<byte> tail = [(byte)('0' + ms / 100), (byte)('0' + ms / 10 % 10), (byte)('0' + ms % 10), (byte)'Z'];
        w.Raw(tail);
    }

    ref struct Out(IBufferWriter<byte> output, JsonLogFormat format)
    {
        readonly IBufferWriter<byte> _output = output;

        public readonly void Raw(ReadOnlySpan<byte> bytes) => _output.Write(bytes);

        public readonly void Number(long n)
        {
            var span = _output.GetSpan(20);
            Utf8Formatter.TryFormat(n, span, out int written);
            _output.Advance(written);
        }

        /// <summary>
        /// Milliseconds rounded to 3 decimals, as <see cref="Utf8JsonWriter.WriteNumberValue(double)"/> writes them
        /// (the shortest form that reads back: "12", "0.5", "3.142"), by integer arithmetic in the range where
        /// that form is the plain decimal one.
        /// </summary>
        public readonly void Millis(double ms)
        {
            // Math.Round(ms, 3) is Math.Round(ms * 1000) / 1000: the integer is the thousandths.
            double k = Math.Round(ms * 1000);
            if (!(k >= 0 && k < 1e12) || double.IsNegative(k))
            {
                var any = _output.GetSpan(64);
                Utf8Formatter.TryFormat(Math.Round(ms, 3), any, out int n);
                _output.Advance(n);
                return;
            }
            long thousandths = (long)k;
            Number(thousandths / 1000);
            int frac = (int)(thousandths % 1000);
            if (frac == 0) return;
            Span<byte> f = [(byte)'.', (byte)('0' + frac / 100), (byte)('0' + frac / 10 % 10), (byte)('0' + frac % 10)];
            int len = frac % 100 == 0 ? 2 : frac % 10 == 0 ? 3 : 4;
            Raw(f[..len]);
        }

        /// <summary>A request id that was never made into a string (its text is plain ASCII).</summary>
        public readonly void Id(long n)
        {
            var span = _output.GetSpan(40);
            span[0] = (byte)'"';
            Gateway.Ids.TryFormat(n, span[1..], out int written);
            span[written + 1] = (byte)'"';
            _output.Advance(written + 2);
        }

        /// <summary>A JSON string (null for null), escaped as the relaxed encoder does.</summary>
        public readonly void String(string? s)
        {
            if (s is null)
            {
                Raw("null"u8);
                return;
            }
            if (s.AsSpan().IndexOfAnyExcept(Plain) >= 0)
            {
                var json = format._escaper ??= new Utf8JsonWriter(_output, Options);
                json.Reset(_output);
                json.WriteStringValue(s);
                json.Flush();
                return;
            }
            var span = _output.GetSpan(s.Length + 2);
            span[0] = (byte)'"';
            Ascii.FromUtf16(s, span[1..], out int n);
            span[n + 1] = (byte)'"';
            _output.Advance(n + 2);
        }
    }
}
