using System.IO.Pipelines;
using Bastion.Protocols.HttpProxy;

namespace Bastion.Tests.Corpora;

/// <summary>
/// Bastion's request framing without sockets: the same steps as the session (head parser, framing check, body
/// decoder, keep-alive rule) over a pipe that holds the whole input and then ends.
/// </summary>
public static class SansIo
{
    public sealed record Outcome(Trace Trace, int Status, string Detail);

    public static async Task<Outcome> RunAsync(byte[] input, int maxHead = 64 * 1024, long maxBody = 1 << 20)
    {
        var pipe = new Pipe();
        await pipe.Writer.WriteAsync(input);
        await pipe.Writer.CompleteAsync();
        var reader = pipe.Reader;
        var head = new RequestHead();
        int heads = 0, messages = 0;
        var scratch = new byte[4096];
        while (true)
        {
            var result = await reader.ReadAsync();
            var buf = result.Buffer;
            var status = RequestHeadParser.TryParse(buf, maxHead, head, out var consumed, out var error);
            if (status == ParseStatus.Error)
                return new(new Trace(heads, messages, error.Reason), error.Status, error.Reason);
            if (status == ParseStatus.NeedMore)
            {
                reader.AdvanceTo(buf.Start, buf.End);
                if (result.IsCompleted)
                    return new(new Trace(heads, messages, null), 0, IsOnlyCrLf(buf) ? "end" : "incomplete head");
                continue;
            }
            reader.AdvanceTo(consumed);
            if (RequestFraming.Check(head, out var length, out var chunked) is { } framing)
                return new(new Trace(heads, messages, framing.Reason), framing.Status, framing.Reason);
            heads++;
            // CONNECT: what follows is tunnel data, as for llhttp's pause on CONNECT.
            if (head.Method == "CONNECT")
                return new(new Trace(heads, messages + 1, null), 200, "tunnel");
            if (chunked || length > 0)
            {
                var body = new RequestBody(reader, length, chunked, maxBody);
                try
                {
                    while (await body.ReadAsync(scratch, CancellationToken.None) > 0) { }
                }
                catch (BodyException e) when (e.Message == "request body ended early")
                {
                    return new(new Trace(heads, messages, null), 0, "incomplete body");
                }
                catch (BodyException e)
                {
                    return new(new Trace(heads, messages, e.Message), e.Status, e.Message);
                }
            }
            messages++;
            bool keepAlive = head.MinorVersion == 1 ? !head.HasToken("Connection", "close") : head.HasToken("Connection", "keep-alive");
            if (!keepAlive)
            {
                // The session closes here; whatever else the client sent is never parsed.
                var rest = await reader.ReadAsync();
                bool more = !rest.Buffer.IsEmpty;
                reader.AdvanceTo(rest.Buffer.End);
                return new(new Trace(heads, messages, more ? "data after a non-keep-alive request (connection closed)" : null), 0, "close");
            }
        }
    }

    static bool IsOnlyCrLf(System.Buffers.ReadOnlySequence<byte> buf)
    {
        foreach (var seg in buf)
            foreach (var b in seg.Span)
                if (b is not ((byte)'\r' or (byte)'\n')) return false;
        return true;
    }
}
