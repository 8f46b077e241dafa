using System.Net.Security;
using System.Net.Sockets;
using System.Text;
using Bastion.Gateway;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Gateway;

/// <summary>
/// The relay between transports, on real loopback sockets: client ⇄ [gateway client side | gateway upstream side] ⇄ server.
/// </summary>
public class StreamRelayTests
{
    static async Task<byte[]> ReadToEnd(Stream s)
    {
        var ms = new MemoryStream();
        await s.CopyToAsync(ms);
        return ms.ToArray();
    }

    static async Task<byte[]> ReadToEnd(Socket s)
    {
        var ms = new MemoryStream();
        var buf = new byte[65536];
        int n;
        while ((n = await s.ReceiveAsync(buf, SocketFlags.None)) > 0) ms.Write(buf, 0, n);
        return ms.ToArray();
    }

    /// <summary>client ⇄ [gateway's client transport | gateway's upstream transport] ⇄ server, all plain sockets.</summary>
    sealed class PlainLine(Socket client, Socket server, Transport gw, Transport up) : IAsyncDisposable
    {
        public static async Task<PlainLine> OpenAsync()
        {
            var (client, gwClient) = await SocketPairs.CreateAsync();
            var (gwUp, server) = await SocketPairs.CreateAsync();
            return new PlainLine(client, server, Transport.FromSocket(gwClient), Transport.FromSocket(gwUp));
        }

        public void Deconstruct(out Socket c, out Socket s, out Transport g, out Transport u) => (c, s, g, u) = (client, server, gw, up);

        public async ValueTask DisposeAsync()
        {
            await gw.DisposeAsync();
            await up.DisposeAsync();
            client.Dispose();
            server.Dispose();
        }
    }

    static byte[] Data(int n, int seed)
    {
        var b = new byte[n];
        new Random(seed).NextBytes(b);
        return b;
    }

    [Fact]
    public async Task Plain_sockets_half_close_each_way_and_count_bytes_with_buffered_bytes_first()
    {
        await using var line = await PlainLine.OpenAsync();
        var (client, server, ct, ut) = line;

        // The protocol read a handshake and left the bytes behind it unread in the pipe.
        await client.SendAsync("HELLO\nearly"u8.ToArray(), SocketFlags.None);
        var lr = new LineReader(ct.Input, 64);
        Assert.Equal("HELLO", Encoding.ASCII.GetString((await lr.ReadAsync(default)).Line.Span));

        long counted = 0;
        var relay = StreamRelay.RunAsync(ct, ut, TimeSpan.FromSeconds(30), (i, o) => Interlocked.Add(ref counted, i + o), default);
        var up = Data(300_000, 1);
        await client.SendAsync(up, SocketFlags.None);
        client.Shutdown(SocketShutdown.Send);
        var atServer = await ReadToEnd(server);
        Assert.Equal("early"u8.ToArray().Concat(up), atServer);

        // The server still answers after the client's half-close.
        var down = Data(200_000, 2);
        await server.SendAsync(down, SocketFlags.None);
        server.Shutdown(SocketShutdown.Send);
        var atClient = await ReadToEnd(client);
        Assert.Equal(down, atClient);

        var r = await relay.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal((5 + up.Length, down.Length, false), (r.BytesFromClient, r.BytesToClient, r.IdleTimedOut));
        Assert.Equal(r.BytesFromClient + r.BytesToClient, Interlocked.Read(ref counted));
    }

    [Fact]
    public async Task Over_TLS_on_the_client_side_half_close_and_counts_hold()
    {
        await using var line = await PlainLine.OpenAsync();
        var (client, server, ct, ut) = line;

        var tlsClient = new SslStream(new NetworkStream(client, ownsSocket: false));
        var clientHandshake = tlsClient.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = "localhost",
            RemoteCertificateValidationCallback = (_, _, _, _) => true,
        });
        var up = await ct.UpgradeToServerTlsAsync(new SslServerAuthenticationOptions { ServerCertificate = TestCerts.Localhost() },
            TimeSpan.FromSeconds(10), default);
        await clientHandshake;
        Assert.True(up.Ok, up.Error);
        Assert.True(ct.IsTls);

        var relay = StreamRelay.RunAsync(ct, ut, TimeSpan.FromSeconds(30), null, default);
        var request = Data(150_000, 3);
        await tlsClient.WriteAsync(request);
        await tlsClient.ShutdownAsync();   // close_notify: the client is done sending
        var atServer = await ReadToEnd(server);
        Assert.Equal(request, atServer);

        var answer = Data(90_000, 4);
        await server.SendAsync(answer, SocketFlags.None);
        server.Shutdown(SocketShutdown.Send);
        var atClient = await ReadToEnd(tlsClient);
        Assert.Equal(answer, atClient);

        var r = await relay.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal((request.Length, answer.Length), (r.BytesFromClient, r.BytesToClient));
    }

    [Fact]
    public async Task A_reset_on_one_side_stops_both_directions()
    {
        var (client, gwClient) = await SocketPairs.CreateAsync();
        var (gwUp, server) = await SocketPairs.CreateAsync();
        using var _2 = server;
        await using var ct = Transport.FromStream(new NetworkStream(gwClient, ownsSocket: true));   // the stream path
        await using var ut = Transport.FromSocket(gwUp);
        var relay = StreamRelay.RunAsync(ct, ut, TimeSpan.FromSeconds(30), null, default);
        await client.SendAsync("x"u8.ToArray(), SocketFlags.None);
        var one = new byte[1];
        Assert.Equal(1, await server.ReceiveAsync(one, SocketFlags.None));
        client.LingerState = new LingerOption(true, 0);
        client.Close();   // RST
        var r = await relay.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(1, r.BytesFromClient);
    }

    [Fact]
    public async Task Bulk_directions_switch_to_splice_with_exact_bytes_and_counts_even_to_a_slow_reader()
    {
        await using var line = await PlainLine.OpenAsync();
        var (client, server, ct, ut) = line;
        long pipesBefore = SplicePipe.Created, blocked = SocketRelay.BlockedDrains;
        long counted = 0;
        var relay = StreamRelay.RunAsync(ct, ut, TimeSpan.FromSeconds(30), (i, o) => Interlocked.Add(ref counted, i + o), default);

        // Both ways at once, well past the switch; the client reads nothing until the gateway's sends to it would
        // block, so that the spliced direction also takes its wait-for-room path.
        var up = Data(12 * 1024 * 1024 + 17, 5);
        var down = Data(24 * 1024 * 1024 + 3, 6);
        var sendUp = Task.Run(async () => { await client.SendAsync(up, SocketFlags.None); client.Shutdown(SocketShutdown.Send); });
        var sendDown = Task.Run(async () => { await server.SendAsync(down, SocketFlags.None); server.Shutdown(SocketShutdown.Send); });
        var atServer = Task.Run(() => ReadToEnd(server));
        if (OperatingSystem.IsLinux()) await Wait.UntilAsync(() => SocketRelay.BlockedDrains > blocked, TimeSpan.FromSeconds(20), "a blocked spliced send");
        var slow = new MemoryStream();
        slow.Write(await ReadToEnd(client));
        await Task.WhenAll(sendUp, sendDown);
        Assert.Equal(up, await atServer);
        Assert.Equal(down, slow.ToArray());

        var r = await relay.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal((up.Length, down.Length, false), (r.BytesFromClient, r.BytesToClient, r.IdleTimedOut));
        Assert.Equal(r.BytesFromClient + r.BytesToClient, Interlocked.Read(ref counted));
        if (OperatingSystem.IsLinux()) Assert.True(SplicePipe.Created >= pipesBefore + 2, "both directions switched to splice");
    }

    [Fact]
    public async Task A_source_in_page_sized_fragments_goes_back_to_copying_with_exact_bytes_and_counts()
    {
        // sendfile(2) from the page cache hands the socket one fragment per 4 KiB page: the pipe's slots run out
        // before its bytes, and the relay copies the rest instead.
        var file = Path.Combine(Path.GetTempPath(), $"bastion-relay-{Guid.NewGuid():N}.bin");
        var down = Data(32 * 1024 * 1024 + 5, 9);
        await File.WriteAllBytesAsync(file, down);
        try
        {
            await using var line = await PlainLine.OpenAsync();
            var (client, server, ct, ut) = line;
            // Counted before the relay starts: on a quiet machine its send can block before this thread looks.
            long switchesBefore = SocketRelay.CopySwitches, blocked = SocketRelay.BlockedDrains;
            long counted = 0;
            var relay = StreamRelay.RunAsync(ct, ut, TimeSpan.FromSeconds(30), (i, o) => Interlocked.Add(ref counted, i + o), default, RelayEnd.UpstreamDone);
            var send = Task.Run(async () => { await server.SendFileAsync(file); server.Shutdown(SocketShutdown.Send); });
            // The client reads only once the data piles up behind the gateway: a spliced send that would block, the
            // switch to copying, or the client's receive queue holding 64 KiB it has not read (the relay's send then
            // blocks in whichever path it is in).
            if (OperatingSystem.IsLinux())
                await Wait.UntilAsync(() => SocketRelay.BlockedDrains > blocked || SocketRelay.CopySwitches > switchesBefore || client.Available >= 64 * 1024,
                    TimeSpan.FromSeconds(20), "the data piling up behind the relay");
            Assert.Equal(down, await ReadToEnd(client));
            await send;
            var r = await relay.WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal((0L, (long)down.Length, false), (r.BytesFromClient, r.BytesToClient, r.IdleTimedOut));
            Assert.Equal(down.Length, Interlocked.Read(ref counted));
            if (OperatingSystem.IsLinux()) Assert.True(SocketRelay.CopySwitches > switchesBefore, "the spliced direction went back to copying");
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task A_reset_during_a_spliced_transfer_stops_both_directions_and_counts_what_went_through()
    {
        await using var line = await PlainLine.OpenAsync();
        var (client, server, ct, ut) = line;
        var relay = StreamRelay.RunAsync(ct, ut, TimeSpan.FromSeconds(30), null, default);
        var chunk = Data(1024 * 1024, 7);
        await client.SendAsync(chunk, SocketFlags.None);
        long got = 0;
        var buf = new byte[65536];
        while (got < chunk.Length) got += await server.ReceiveAsync(buf, SocketFlags.None);
        client.LingerState = new LingerOption(true, 0);
        client.Close();   // RST while the upload direction is spliced and waiting
        var r = await relay.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(chunk.Length, r.BytesFromClient);
        Assert.Equal(0, await server.ReceiveAsync(buf, SocketFlags.None));
    }

    [Fact]
    public async Task A_spliced_relay_that_goes_quiet_ends_on_the_idle_timeout()
    {
        await using var line = await PlainLine.OpenAsync();
        var (client, server, ct, ut) = line;
        var relay = StreamRelay.RunAsync(ct, ut, TimeSpan.FromSeconds(1), null, default);
        var chunk = Data(1024 * 1024, 8);
        await client.SendAsync(chunk, SocketFlags.None);
        var r = await relay.WaitAsync(TimeSpan.FromSeconds(15));
        Assert.True(r.IdleTimedOut);
        Assert.Equal(chunk.Length, r.BytesFromClient);
    }

    [Fact]
    public async Task A_one_way_upload_is_copied_in_batches_and_a_sender_that_slows_to_a_trickle_still_gets_through()
    {
        await using var line = await PlainLine.OpenAsync();
        var (client, server, ct, ut) = line;
        var relay = StreamRelay.RunAsync(ct, ut, TimeSpan.FromSeconds(30), null, default, RelayEnd.ClientDone);
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(20));

        // Past the switch to bulk (a low-water mark of 256 KiB on the client's socket from here), then a few bytes
        // and nothing more: they must reach the server while the client still holds the connection open.
        var bulk = Data(3 * 1024 * 1024 + 5, 9);
        await client.SendAsync(bulk, SocketFlags.None);
        var got = new MemoryStream();
        var buf = new byte[65536];
        while (got.Length < bulk.Length) got.Write(buf, 0, await server.ReceiveAsync(buf, SocketFlags.None, deadline.Token));
        Assert.Equal(bulk, got.ToArray());
        var tail = Data(10, 10);
        await client.SendAsync(tail, SocketFlags.None);
        int n = 0;
        while (n < tail.Length) n += await server.ReceiveAsync(buf.AsMemory(n), SocketFlags.None, deadline.Token);
        Assert.Equal(tail, buf[..n]);

        client.Shutdown(SocketShutdown.Send);
        Assert.Empty(await ReadToEnd(server));
        var r = await relay.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal((bulk.Length + tail.Length, 0L, false), (r.BytesFromClient, r.BytesToClient, r.IdleTimedOut));
    }
}
