using System.Net;
using Bastion.Configuration;
using Bastion.Gateway;
using Bastion.Hosting;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Gateway;

/// <summary>The exchange record and the shared admission, on a real gateway host with its access log in a file.</summary>
public class ExchangeTests
{
    const string Config = """
        listeners:
          - { name: db, type: tcp, listen: 127.0.0.1:0, upstream: "127.0.0.1:9", policy: p }
        policies:
          p: { default: deny }
        """;

    static (ListenerContext, Admission) Listener(TestGateway gw)
    {
        var ctx = new ListenerContext(gw.Host, "db", ListenerType.Tcp);
        return (ctx, new Admission(ctx));
    }

    [Fact]
    public async Task A_connection_has_one_record_and_one_closed_line_and_bytes_move_together()
    {
        await using var gw = await TestGateway.StartAsync(Config);
        var (ctx, admission) = Listener(gw);
        var (a, b) = await SocketPairs.CreateAsync();
        using var _ = b;
        Assert.True(admission.TryEnter());
        var conn = admission.Register(Transport.FromSocket(a), (IPEndPoint)a.RemoteEndPoint!, (IPEndPoint)a.LocalEndPoint!);
        Assert.Same(conn.Record, ctx.Open(conn, ExchangeKinds.Connection));
        Assert.Contains(conn, gw.Host.Connections.All);

        // A request record counts its own bytes and the connection's; the connection record reports the connection's.
        var x = ctx.Open(conn, ExchangeKinds.Request);
        x.Request = "TEST one";
        x.AddIn(10);
        x.AddOut(20);
        conn.Record.AddBytes(1, 2);
        x.Deny(PseudoRules.Protocol, "test").Close();
        x.Close();
        conn.Record.Request = "TEST conn";
        admission.Release(conn);
        conn.Record.Close();
        a.Dispose();

        var req = await gw.WaitForLogAsync(l => l.Str("request") == "TEST one");
        var closed = await gw.WaitForLogAsync(l => l.Str("request") == "TEST conn");
        Assert.Equal(("request", "deny", "protocol", 10L, 20L), (req.Str("event"), req.Str("verdict"), req.Str("rule"), req.Num("bytes_in"), req.Num("bytes_out")));
        Assert.Equal(("connection", conn.Id, 11L, 22L), (closed.Str("event"), closed.Str("id"), closed.Num("bytes_in"), closed.Num("bytes_out")));
        Assert.Single(gw.LogLines(), l => l.Str("request") == "TEST one");
        Assert.Single(gw.LogLines(), l => l.Str("event") == "connection");
        Assert.DoesNotContain(conn, gw.Host.Connections.All);
        var counters = gw.Host.Metrics.Counters("db");
        Assert.Equal((11L, 22L, 1L), (counters.BytesIn, counters.BytesOut, counters.Denied));
    }

    [Fact]
    public async Task A_child_connection_is_registered_aborted_with_its_parent_and_logs_its_transfer()
    {
        await using var gw = await TestGateway.StartAsync(Config);
        var (ctx, admission) = Listener(gw);
        var (a, b) = await SocketPairs.CreateAsync();
        var (c, d) = await SocketPairs.CreateAsync();
        using var _1 = b; using var _2 = d;
        Assert.True(admission.TryEnter());
        var parent = admission.Register(Transport.FromSocket(a), (IPEndPoint)a.RemoteEndPoint!, null);
        var child = admission.RegisterChild(parent, Transport.FromSocket(c), (IPEndPoint)c.RemoteEndPoint!, null);
        Assert.Same(parent, child.Parent);
        Assert.Contains(child, parent.Children);
        Assert.Equal(2, gw.Host.Connections.Count);
        Assert.Equal(1, admission.Active);   // children do not count against max_connections
        parent.Abort();
        Assert.True(child.Aborted.IsCancellationRequested);
        child.Record.Request = "RETR file";
        child.Record.AddIn(5);
        admission.ReleaseChild(child);
        admission.Release(parent);
        var transfer = await gw.WaitForLogAsync(l => l.Str("event") == "transfer");
        Assert.Equal(("RETR file", 5L), (transfer.Str("request"), transfer.Num("bytes_in")));
        Assert.Empty(parent.Children);
        Assert.Equal(0, gw.Host.Connections.Count);
    }
}
