using System.Net;
using System.Net.Sockets;
using Bastion.Protocols.Http.Io;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Http1;

/// <summary>
/// Receive buffers are held only while bytes are in them (issue 14): a keep-alive connection waiting for its next
/// request and an idle pooled upstream connection hold none, as nginx frees its buffers on idle connections. On the
/// epoll engine a receive waits for readiness with no buffer and rents one for the read itself.
/// </summary>
[Collection(nameof(AllocationTests))]
public sealed class IdleBufferTests
{
    [Fact]
    public async Task A_peer_takes_a_buffer_only_when_bytes_arrive_and_gives_it_back_when_they_are_consumed()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await client.ConnectAsync(listener.LocalEndPoint!);
        var io = new EpollDuplex(await listener.AcceptAsync());
        var peer = new Peer(io);
        Assert.False(peer.HoldsBuffer);

        var pending = peer.ReceiveAsync();
        Assert.False(pending.IsCompleted);
        Assert.False(peer.HoldsBuffer);   // waiting for readiness, with no buffer
        client.Send("GET / HTTP/1.1\r\n"u8);
        int n = await pending.AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(16, n);
        Assert.True(peer.HoldsBuffer);
        Assert.Equal("GET / HTTP/1.1\r\n"u8.ToArray(), peer.Data.ToArray());

        // Part consumed: the rest stays, with its buffer; all consumed: the buffer goes back.
        peer.Consume(4);
        Assert.True(peer.HoldsBuffer);
        Assert.Equal("/ HTTP/1.1\r\n"u8.ToArray(), peer.Data.ToArray());
        peer.Consume(peer.Count);
        Assert.False(peer.HoldsBuffer);

        // The end of the stream is read without keeping a buffer either.
        client.Shutdown(SocketShutdown.Send);
        Assert.Equal(0, await peer.ReceiveAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.False(peer.HoldsBuffer);
        peer.Release();
        await io.DisposeAsync();
    }

    [Fact]
    public async Task Idle_keep_alive_connections_and_their_pooled_upstream_connections_hold_no_buffer()
    {
        await using var origin = await NginxOrigin.StartAsync();
        await using var gw = await TestGateway.StartAsync($$"""
            listeners:
              - name: site
                type: http-reverse
                listen: 127.0.0.1:0
                policy: open
                routes:
                  - { path: "/{**rest}", upstream: web }
            upstreams:
              web:
                targets: [{{origin.Url}}]
            policies:
              open:
                default: allow
            """);
        int port = gw.Port("site");
        // Other tests' leftovers may hold buffers; this test's connections must add none while idle.
        long before = Peer.BuffersHeld;
        const int connections = 20;
        var clients = new List<RawClient>();
        try
        {
            for (int i = 0; i < connections; i++)
            {
                var c = await RawClient.ConnectAsync(port);
                clients.Add(c);
                await c.SendAsync($"GET /100b HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
                Assert.Equal(200, (await c.ReadResponseAsync()).Status);
            }
            await Wait.UntilAsync(() => Peer.BuffersHeld <= before, TimeSpan.FromSeconds(10),
                $"idle connections to give their buffers back (held: {Peer.BuffersHeld}, before: {before})");

            // A request head in the middle of arriving is held (the counter sees real buffers)...
            await clients[0].SendAsync($"GET /100b HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
            await Wait.UntilAsync(() => Peer.BuffersHeld >= before + 1, TimeSpan.FromSeconds(10), "the partial head to be held");
            // ...and when it is complete and answered, given back; every idle connection still works.
            await clients[0].SendAsync("\r\n");
            foreach (var c in clients)
            {
                if (c != clients[0]) await c.SendAsync($"GET /100b HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
                var (status, _, body) = await c.ReadResponseAsync();
                Assert.Equal(200, status);
                Assert.Equal("OPEN /100b\n", body);
            }
            await Wait.UntilAsync(() => Peer.BuffersHeld <= before, TimeSpan.FromSeconds(10),
                $"the connections to give their buffers back again (held: {Peer.BuffersHeld}, before: {before})");
        }
        finally
        {
            foreach (var c in clients) c.Dispose();
        }
    }
}
