using System.Text.Json;
using Bastion.Observability;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Unit;

public class WarningsTests
{
    [Fact]
    public void Check_warns_about_rules_that_can_never_match()
    {
        var f = new ConfigFixture().File("users.htpasswd", "alice:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n");
        var (rt, errors) = f.Build("""
            identity:
              users: users.htpasswd
              groups: { staff: [alice, ghost] }
            listeners:
              - { name: web, type: http-proxy, listen: 127.0.0.1:0, policy: p }
              - { name: db, type: tcp, listen: 127.0.0.1:0, upstream: 127.0.0.1:5432, policy: p }
              - { name: open, type: socks5, listen: 127.0.0.1:0 }
            policies:
              p:
                rules:
                  - allow: { method: GET }
                  - name: staff-only
                    allow: { group: staff }
                  - allow: { port: 5432 }
                  - deny: {}
                  - allow: { host: late.example }
            """);
        Assert.NotNull(rt);
        Assert.DoesNotContain(errors, e => !e.IsWarning);
        ConfigFixture.HasError(errors, f.Path, 11, 9, "rule p#1 can never match on listener 'db' (tcp does not supply 'method')", warning: true);
        ConfigFixture.HasError(errors, f.Path, 12, 9, "rule staff-only can never match on listener 'web': it asks about 'group' but the listener does not authenticate", warning: true);
        ConfigFixture.HasError(errors, f.Path, 16, 9, "rule p#5 is never reached: rule p#4 before it matches every request", warning: true);
        ConfigFixture.HasError(errors, f.Path, 7, 5, "listener 'open' names no policy: it denies everything", warning: true);
        ConfigFixture.HasError(errors, f.Path, 2, 10, "group 'staff' names 'ghost', who is not in the users file", warning: true);
        // Conditions the listener supplies do not warn.
        Assert.DoesNotContain(errors, e => e.Message.Contains("listener 'web'") && e.Message.Contains("p#1"));
        Assert.DoesNotContain(errors, e => e.Message.Contains("p#3"));
    }
}

public class AccessLogTests
{
    [Fact]
    public async Task Writes_one_json_object_per_event_with_every_field()
    {
        var path = Path.Combine(Scratch.NewDir("log"), "sub", "access.log");
        var log = new AccessLog(path);
        log.Write(new AccessEvent
        {
            Ts = new DateTime(2024, 5, 6, 7, 8, 9, 123, DateTimeKind.Utc),
            Id = "r1",
            Listener = "mail",
            Type = "smtp",
            Client = "127.0.0.1:5555",
            User = "alice",
            Request = "RCPT TO:<a@b.example>",
            Verdict = Bastion.Configuration.Verdict.Deny,
            Rule = "p#2",
            Reason = "not \"ours\"",
            Status = 550,
            BytesIn = 10,
            BytesOut = 20,
            DurationMs = 1.23456,
        });
        log.Write(new AccessEvent { Event = "connection", Id = "c1", Listener = "db", Type = "tcp" });
        await log.DisposeAsync();
        Assert.Equal(2, log.Written);
        Assert.Equal(0, log.Dropped);

        var lines = File.ReadAllLines(path);
        Assert.Equal(2, lines.Length);
        Assert.Contains("\"request\":\"RCPT TO:<a@b.example>\"", lines[0]);   // readable, not \u003C
        var e = JsonDocument.Parse(lines[0]).RootElement;
        Assert.Equal("2024-05-06T07:08:09.123Z", e.GetProperty("ts").GetString());
        Assert.Equal("request", e.GetProperty("event").GetString());
        Assert.Equal("r1", e.GetProperty("id").GetString());
        Assert.Equal("mail", e.GetProperty("listener").GetString());
        Assert.Equal("smtp", e.GetProperty("type").GetString());
        Assert.Equal("127.0.0.1:5555", e.GetProperty("client").GetString());
        Assert.Equal("alice", e.GetProperty("user").GetString());
        Assert.Equal("deny", e.GetProperty("verdict").GetString());
        Assert.Equal("p#2", e.GetProperty("rule").GetString());
        Assert.Equal("not \"ours\"", e.GetProperty("reason").GetString());
        Assert.Equal(550, e.GetProperty("status").GetInt32());
        Assert.Equal(10, e.GetProperty("bytes_in").GetInt64());
        Assert.Equal(20, e.GetProperty("bytes_out").GetInt64());
        Assert.Equal(1.235, e.GetProperty("duration_ms").GetDouble());
        var c = JsonDocument.Parse(lines[1]).RootElement;
        Assert.Equal("connection", c.GetProperty("event").GetString());
        Assert.Equal(JsonValueKind.Null, c.GetProperty("user").ValueKind);
    }

    [Fact]
    public async Task A_full_queue_drops_instead_of_blocking()
    {
        // /dev/full fails every write: the writer drops and counts, Write never throws nor waits.
        if (!File.Exists("/dev/full")) return;
        var log = new AccessLog("/dev/full");
        for (int i = 0; i < 100_000; i++) log.Write(new AccessEvent { Id = $"{i}", Listener = "l", Type = "tcp" });
        await log.DisposeAsync();
        Assert.Equal(0, log.Written);
        Assert.True(log.Dropped >= 100_000 - 1, $"dropped {log.Dropped}");
    }
}
