using System.Buffers;
using Bastion.Protocols.Http.Io;
using Bastion.Gateway;
using System.Runtime.CompilerServices;

namespace Bastion.Protocols.Smtp;

/// <summary>
/// CHUNKING (RFC 3030) towards the client when `smtp.extensions` lists it. Each `BDAT size [LAST]` is followed by
/// exactly that many octets, read even when the command is refused so that none of them is taken for a command.
/// Towards the server the message is always DATA: the first chunk opens it (DATA, 354, the Received: header), the
/// <see cref="ChunkEncoder"/> dot-stuffs the chunks and applies the bare CR/LF rule, and at `LAST` the message ends
/// as a DATA message does (size, policy, the server's reply decides). Chunks before LAST get 250 once relayed.
/// </summary>
sealed partial class SmtpSession
{
    /// <summary>The message being sent in chunks (its log record), or null.</summary>
    Exchange? _chunkX;
    ChunkEncoder? _encoder;
    /// <summary>The server failed while chunks were relayed: the rest is read and dropped, the client told at the next reply.</summary>
    string? _chunkLost;

    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    async ValueTask<bool> BdatAsync()
    {
        long size = _cmd.ChunkSize;
        bool last = _cmd.Last;
        string? early = _from is null ? "503 5.5.1 need MAIL before BDAT"
            : _rcpts.Count == 0 ? (_tried > 0 ? "554 5.5.1 no valid recipients" : "503 5.5.1 need RCPT before BDAT")
            : null;
        if (early is not null)
        {
            if (!await ReadChunkAsync(size, null, null).ConfigureAwait(false)) return false;
            await ReplyAsync(early).ConfigureAwait(false);
            return true;
        }
        if (_chunkX is null)
        {
            var x = OpenRequest();
            x.Request = MessageText("BDAT");
            var go = await UpstreamCommandAsync("DATA", x).ConfigureAwait(false);
            if (go is null || go.Code != 354)
            {
                try
                {
                    if (!await ReadChunkAsync(size, null, null).ConfigureAwait(false)) return false;
                    if (go is null) return await UpstreamLostAsync(x).ConfigureAwait(false);
                    x.Deny(PseudoRules.Protocol, $"upstream refused DATA: {go}");
                    await ResetLocalAsync().ConfigureAwait(false);
                    return await RelayAsync(x, go).ConfigureAwait(false);
                }
                finally { x.Close(); }
            }
            WriteReceived(_up!, x);
            _encoder ??= listener.Encoder(_smtp);
            _encoder.Reset();
            _chunkX = x;
            _chunkLost = null;
        }
        var mx = _chunkX;
        var enc = _encoder!;
        bool complete;
        try { complete = await ReadChunkAsync(size, enc, mx).ConfigureAwait(false); }
        catch
        {
            // Idle timeout or a vanished client mid-chunk: the server must not deliver a half.
            AbandonChunks("the client stopped sending during BDAT");
            throw;
        }
        if (!complete)
        {
            AbandonChunks("client closed the connection during BDAT");
            return false;
        }
        if (last && enc.Refusal is null && _chunkLost is null) enc.Finish(_up!.Output);
        if (!last && enc.Refusal is null && _chunkLost is null)
        {
            await ReplyAsync($"250 2.0.0 {size} octets received").ConfigureAwait(false);
            return true;
        }
        // LAST, or a refusal: the message ends here (RFC 3030 4.2: after a failed chunk the client sends no more).
        _chunkX = null;
        try { return await EndMessageAsync(mx, enc, _chunkLost).ConfigureAwait(false); }
        finally { mx.Close(); }
    }

    /// <summary>
    /// Reads exactly <paramref name="size"/> octets off the client's pipe: through the encoder to the server, or
    /// dropped (<paramref name="enc"/> null). False when the client closed first.
    /// </summary>
    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    async ValueTask<bool> ReadChunkAsync(long size, ChunkEncoder? enc, Exchange? x)
    {
        var input = _in;
        long left = size;
        while (left > 0)
        {
            _idle.TryReset();
            _idle.CancelAfter(_cfg.Limits.IdleTimeout);
            var result = await input.ReadAsync(_linked.Token).ConfigureAwait(false);
            var take = result.Buffer.Slice(0, Math.Min(left, result.Buffer.Length));
            IBufferWriter<byte> sink = _chunkLost is null && _up is not null ? _up.Output : Discard.Instance;
            if (enc is not null)
                foreach (var segment in take) enc.Feed(segment.Span, sink);
            input.AdvanceTo(take.End);
            left -= take.Length;
            if (x is not null) x.AddIn(take.Length);
            else _connX.AddIn(take.Length);
            if (enc is not null && _chunkLost is null && enc.Refusal is null && _up is not null)
                _chunkLost = await _up.FlushAsync(conn.Aborted).ConfigureAwait(false);
            if (left > 0 && result.IsCompleted) return false;
        }
        return true;
    }

    /// <summary>A chunked message that will not be finished: the server's session is dropped so it discards it.</summary>
    void AbandonChunks(string why)
    {
        if (_chunkX is not { } x) return;
        _chunkX = null;
        DropUpstream(abort: true);
        x.Deny(PseudoRules.Protocol, why);
        x.Close();
    }
}
