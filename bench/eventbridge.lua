-- wrk script for bench/eventbridge.sh: POSTs one CloudEvent per request in
-- the structured mode (application/cloudevents+json) to the bus path given
-- as the URL, a fresh id each time, the data padded so that the whole event
-- is EVENT_BYTES (default 1024) bytes. Keep-alive is wrk's default; wrk
-- itself counts the answers other than 2xx/3xx ("Non-2xx or 3xx responses").
--
--   wrk -t2 -c8 -d10s -s bench/eventbridge.lua http://127.0.0.1:28080/v1/buses/ingest/events

local size = tonumber(os.getenv("EVENT_BYTES") or "1024")
local counter = 0

local head = '{"specversion":"1.0","id":"%s","source":"/bench/wrk","type":"bench.ingest",' ..
	'"datacontenttype":"application/json","data":{"pad":"'
local tail = '"}}'

-- Each thread's ids start with its own tag (a global of that thread's state).
function setup(thread)
	counter = counter + 1
	thread:set("thread_tag", "w" .. counter)
end

function init(args)
	counter = 0
	wrk.method = "POST"
	wrk.headers["Content-Type"] = "application/cloudevents+json"
end

local pad_cache = {}

local function pad(n)
	if n < 0 then n = 0 end
	local p = pad_cache[n]
	if not p then
		p = string.rep("x", n)
		pad_cache[n] = p
	end
	return p
end

function request()
	counter = counter + 1
	local id = thread_tag .. "-" .. counter
	local h = string.format(head, id)
	local body = h .. pad(size - #h - #tail) .. tail
	return wrk.format(nil, nil, nil, body)
end
