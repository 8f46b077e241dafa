using Bastion.Protocols.Http.Codec;
using Bastion.Tests.Corpora;

namespace Bastion.Tests.Codec;

/// <summary>
/// A whole byte stream through the codec, without sockets, as the engine reads it: heads, bodies by their framing,
/// the keep-alive rule. Gives the same <see cref="Trace"/> shape as llhttp's logs.
/// </summary>
public static class CodecSansIo
{
    public sealed record Outcome(Trace Trace, int Status, string Detail);

    public static Outcome Requests(byte[] input, int maxHead = 64 * 1024)
    {
        var head = new RequestHead();
        int pos = 0, heads = 0, messages = 0;
        while (true)
        {
            var r = RequestParser.TryParse(input.AsSpan(pos), head, maxHead, out int consumed, out var error);
            if (r == ParseResult.Invalid) return new(new Trace(heads, messages, error.Reason), error.Status, error.Reason);
            if (r == ParseResult.NeedMore)
                return new(new Trace(heads, messages, null), 0, input.AsSpan(pos).IndexOfAnyExcept("\r\n"u8) < 0 ? "end" : "incomplete head");
            heads++;
            pos += consumed;
            // CONNECT and upgrades: what follows is another protocol (llhttp pauses there).
            if (head.IsConnect || head.Upgrade) return new(new Trace(heads, messages + 1, null), 200, "tunnel");
            var body = Body(input, ref pos, head.Framing, 400, out var bodyError);
            if (bodyError is not null) return new(new Trace(heads, messages, bodyError.Value.Reason), bodyError.Value.Status, bodyError.Value.Reason);
            if (!body) return new(new Trace(heads, messages, null), 0, "incomplete body");
            messages++;
            if (head.Close)
            {
                bool more = pos < input.Length;
                return new(new Trace(heads, messages, more ? "data after a request that closes the connection" : null), 0, "close");
            }
        }
    }

    /// <summary>Responses to GET requests, one after another on one connection.</summary>
    public static Outcome Responses(byte[] input, int maxHead = 64 * 1024)
    {
        var head = new ResponseHead();
        int pos = 0, heads = 0, messages = 0;
        while (true)
        {
            if (pos == input.Length) return new(new Trace(heads, messages, null), 0, "end");
            var r = ResponseParser.TryParse(input.AsSpan(pos), head, maxHead, false, false, out int consumed, out var error);
            if (r == ParseResult.Invalid) return new(new Trace(heads, messages, error.Reason), error.Status, error.Reason);
            if (r == ParseResult.NeedMore) return new(new Trace(heads, messages, null), 0, "incomplete head");
            heads++;
            pos += consumed;
            if (head.Status == 101) return new(new Trace(heads, messages + 1, null), 101, "upgrade");
            var body = Body(input, ref pos, head.Framing, 502, out var bodyError);
            if (bodyError is not null) return new(new Trace(heads, messages, bodyError.Value.Reason), bodyError.Value.Status, bodyError.Value.Reason);
            if (!body) return new(new Trace(heads, messages, null), 0, "incomplete body");
            messages++;
            if (head.Close && !head.IsInterim)
            {
                bool more = pos < input.Length;
                return new(new Trace(heads, messages, more ? "data after a response that closes the connection" : null), 0, "close");
            }
        }
    }

    /// <summary>Skips one body. False when the input ends first.</summary>
    static bool Body(byte[] input, ref int pos, BodyFraming framing, int status, out HttpError? error)
    {
        error = null;
        switch (framing.Kind)
        {
            case BodyKind.None:
                return true;
            case BodyKind.Length:
                if (input.Length - pos < framing.Length) return false;
                pos += (int)framing.Length;
                return true;
            case BodyKind.UntilClose:
                pos = input.Length;
                return true;
            default:
                var copy = input[pos..];
                var dec = new ChunkedDecoder();
                var r = dec.Transform(copy, false, out int consumed, out _, out var e, status);
                if (r == ParseResult.Invalid) { error = e; return false; }
                if (r == ParseResult.NeedMore) return false;
                pos += consumed;
                return true;
        }
    }
}
